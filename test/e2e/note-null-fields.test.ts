import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { taskWithStatus } from "../support/observe.ts";
import { auditKinds } from "../support/scripts-humans.ts";

// Models write `null` for an optional field they have nothing for: each note here is usable.
const script = scriptByAgent({
  "customer-service": [
    {
      toolCalls: [
        {
          name: "transfer_to_fulfillment",
          arguments: {
            summary: "Order 1042 is stuck.",
            needed: "Find out why.",
            reason: null,
            deadline: null,
            confidence: null,
            artifact: null,
            facts: { order_id: "1042" },
          },
        },
      ],
    },
    {
      toolCalls: [
        {
          name: "escalate_to_human",
          arguments: {
            requester: "Dana",
            summary: "Order 1042 is stuck and the count is unknown.",
            reason: "Nobody can ship it today.",
            confidence: 0.5,
            lane: "operations",
            recommended_action: "Count the stock.",
            deadline: null,
            artifact: null,
            done: null,
          },
        },
      ],
    },
  ],
  fulfillment: [
    {
      toolCalls: [{ name: "hand_back", arguments: { result: "Waiting on a count.", facts: null } }],
    },
  ],
});

let h: Harness;
before(async () => {
  h = await startHarness({ script });
});
after(async () => {
  await h.close();
});

test("null in a note's optional fields is read as absent, not as an unusable reply", async () => {
  const { ts } = await h.mention("where is order 1042?");
  const task = await h.until("the task to wait on a person", () =>
    taskWithStatus(h.db.db, ts, "waiting_human", "failed", "done"),
  );
  assert.equal(task.status, "waiting_human", task.failure_reason ?? "");
  assert.deepEqual(await auditKinds(h.db.db, task.id, "model_error"), []);
  const handoffs = await h.db.db
    .selectFrom("handoffs")
    .select(["kind", "note"])
    .where("task_id", "=", task.id)
    .where("kind", "<>", "start")
    .orderBy("step_no")
    .execute();
  assert.deepEqual(
    handoffs.map((row) => row.kind),
    ["transfer", "hand_back", "escalation"],
  );
  for (const { note } of handoffs)
    assert.ok(!Object.values(note as object).includes(null), JSON.stringify(note));
});
