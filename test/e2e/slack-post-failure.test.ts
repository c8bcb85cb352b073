import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CHANNEL, type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { whereIsMyOrderScript } from "../support/scripts.ts";
import { finishedTask } from "../support/scripts-humans.ts";

let h: Harness;
before(async () => {
  h = await startHarness({ script: scriptByAgent(whereIsMyOrderScript()) });
});
after(async () => {
  await h.close();
});

test("a post that Slack refuses mid-chain is sent again, and the thread keeps its order", async () => {
  // The first handoff card fails; the run's next turns are already under way while it is posted.
  h.slack.failNext("chat.postMessage", { error: "internal_error" });
  const { status, ts } = await h.mention("where is order 1042?");
  assert.equal(status, 200);
  const task = await h.until("the task to finish", () => finishedTask(h.db.db, ts));

  const attempts = h.slack
    .callsTo("chat.postMessage")
    .filter((c) => c.args.channel === CHANNEL && c.args.thread_ts === ts);
  assert.equal(attempts.length, 6, "five messages, one of them twice");
  const thread = h.slack.messagesIn(CHANNEL, ts).slice(1);
  assert.deepEqual(
    thread.map((m) => m.username),
    ["Customer Service", "Fulfillment", "Inventory", "Fulfillment", "Customer Service"],
    "each message once, in the order the agents spoke",
  );
  const outbox = await h.db.db
    .selectFrom("slack_outbox")
    .select(["status", "attempts", "slack_ts"])
    .where("task_id", "=", task.id)
    .orderBy("id")
    .execute();
  assert.deepEqual(
    outbox.map((r) => [r.status, r.attempts]),
    [
      ["sent", 1],
      ["sent", 0],
      ["sent", 0],
      ["sent", 0],
      ["sent", 0],
    ],
  );
  assert.deepEqual(
    outbox.map((r) => r.slack_ts),
    thread.map((m) => m.ts),
    "each row points at its message",
  );
});
