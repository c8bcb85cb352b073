import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { postsInThread, taskInThread } from "../support/observe.ts";

const transfer = {
  name: "transfer_to_fulfillment",
  arguments: {
    summary: "Order 1042 is stuck.",
    needed: "Find out why and ship it.",
    facts: { order_id: "1042" },
  },
};
const script = scriptByAgent({
  "customer-service": [
    { toolCalls: [{ name: "lookup_order", arguments: "{bad" }] },
    { toolCalls: [{ name: "delete_everything", arguments: {} }] },
    // A third reply with one bad call beside a valid handoff: the handoff is usable work.
    { toolCalls: [{ name: "lookup_order", arguments: "{bad" }, transfer] },
  ],
  fulfillment: [{ content: "Order 1042 ships today." }],
});

let h: Harness;
before(async () => {
  h = await startHarness({ script });
});
after(async () => {
  await h.close();
});

test("a reply that hands the task over is not counted as a third unusable reply", async () => {
  const { ts } = await h.mention("where is order 1042?");
  const task = await h.until("the task to end", async () => {
    const t = await taskInThread(h.db.db, ts);
    return t && (t.status === "done" || t.status === "failed") ? t : undefined;
  });
  await new Promise((r) => setTimeout(r, 500));
  const texts = postsInThread(h.slack, ts).map((p) => String(p.args.text));
  assert.equal(
    task.status,
    "done",
    `status ${task.status} (${task.failure_reason}); posts: ${texts.join(" | ")}`,
  );
  assert.equal(task.owner_id, "fulfillment");
});
