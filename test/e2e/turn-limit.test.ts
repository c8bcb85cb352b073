import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { agentsFileWith, type Harness, startHarness } from "../support/harness.ts";
import type { Script } from "../support/model-server.ts";
import { auditEvents, postsInThread, taskWithStatus } from "../support/observe.ts";

// A small local model stuck in a loop calls the same read tool again and again and never answers.
// Every reply was usable (an allowed tool, valid arguments), so no strike stopped it: 150 model
// calls and 600,000 tokens later the task still ran, each call resending the whole stint.

const TURN_LIMIT = 5;
const agentsFile = agentsFileWith(["turn_limit: 25", `turn_limit: ${TURN_LIMIT}`]);
const script: Script = () => ({
  toolCalls: [{ name: "lookup_order", arguments: { order_id: "1042" } }],
});

let h: Harness;
before(async () => {
  h = await startHarness({ script, agentsFile });
});
after(async () => {
  await h.close();
});

test("an agent that calls tool after tool without an answer is stopped at the turn limit", async () => {
  const { ts } = await h.mention("where is order 1042?");
  const task = await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"));
  assert.equal(h.model.requests.length, TURN_LIMIT);
  assert.match(task.failure_reason ?? "", /took 5 turns in a row without an answer/);
  assert.equal((await auditEvents(h.db.db, task.id, "task_failed")).length, 1);
  const notice = await h.until("the failure notice", async () =>
    postsInThread(h.slack, ts).find((p) => /task failed/i.test(String(p.args.text))),
  );
  assert.match(String(notice.args.text), /the limit is 5/);
});
