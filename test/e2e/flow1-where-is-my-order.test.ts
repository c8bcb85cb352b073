import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ownershipHistory } from "../../src/db/ledger.repository.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { postsInThread } from "../support/observe.ts";
import { assertFlowOneDoneOnce, whereIsMyOrderScript } from "../support/scripts.ts";
import { finishedTask } from "../support/scripts-humans.ts";

let h: Harness;
before(async () => {
  h = await startHarness({ script: scriptByAgent(whereIsMyOrderScript()) });
});
after(async () => {
  await h.close();
});

test("flow 1: where is my order — CS, Fulfillment and Inventory pass the work along and back", async () => {
  const { status, ts } = await h.mention("where is order 1042?");
  assert.equal(status, 200);

  // Done, and everything it decided to say delivered to Slack.
  const task = await h.until("the task to finish", () => finishedTask(h.db.db, ts));

  // Ownership CS → F → I → F → CS, the stock fixed, the order shipped once, four personas in the
  // thread with the answer last, from CS.
  await assertFlowOneDoneOnce({ db: h.db.db, slack: h.slack, until: h.until }, task, ts);
  const history = await ownershipHistory(h.db.db, task.id);
  assert.equal(history.length, 5, "the task's history shows each ownership change");
  for (const post of postsInThread(h.slack, ts))
    assert.ok(post.args.icon_emoji, "every persona has its icon");

  // The ledger has every model call and tool call, with idempotency keys.
  const modelCalls = await h.db.db
    .selectFrom("model_calls")
    .selectAll()
    .where("task_id", "=", task.id)
    .execute();
  assert.equal(modelCalls.length, 10);
  const toolCalls = await h.db.db
    .selectFrom("tool_calls")
    .selectAll()
    .where("task_id", "=", task.id)
    .execute();
  assert.equal(toolCalls.length, 5);
  assert.ok(toolCalls.every((t) => t.idempotency_key.startsWith(task.id)));
});
