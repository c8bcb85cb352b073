import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { agentsFileWith, type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { postsInThread, taskInThread } from "../support/observe.ts";
import { whereIsMyOrderScript } from "../support/scripts.ts";

// Flow 1 is exactly four handoffs: CS → F → I → F → CS. With hop_limit: 4 no handoff goes past
// the limit, yet Customer Service, handed the finished work back, is never asked to answer.
const agentsFile = agentsFileWith(["hop_limit: 12", "hop_limit: 4"]);

let h: Harness;
before(async () => {
  h = await startHarness({ script: scriptByAgent(whereIsMyOrderScript()), agentsFile });
});
after(async () => {
  await h.close();
});

test("a chain of exactly hop_limit handoffs may still answer the requester", async () => {
  const { ts } = await h.mention("where is order 1042?");
  const task = await h.until("the task to settle", async () => {
    const t = await taskInThread(h.db.db, ts);
    return t && (t.status === "done" || t.status === "failed") ? t : undefined;
  });
  assert.equal(task.status, "done", `${task.failure_reason}`);
  assert.equal(task.hop_count, 4);
  await h.until("Customer Service's answer", async () =>
    postsInThread(h.slack, ts).find(
      (p) => p.args.username === "Customer Service" && /on the way/.test(String(p.args.text)),
    ),
  );
});
