import assert from "node:assert/strict";
import { after, test } from "node:test";
import { CHANNEL, type Harness, startHarness } from "../support/harness.ts";
import { flowOneByState } from "../support/scripts.ts";
import { finishedTask } from "../support/scripts-humans.ts";

let h: Harness | undefined;
after(async () => {
  await h?.close();
});

test("a post whose answer is lost after Slack stored it is not posted again, nor a rate-limited one lost", async () => {
  const harness = await startHarness({ script: flowOneByState(async () => {}) });
  h = harness;
  // Slack stores the first message and answers 503; the second post is rate limited for a second.
  harness.slack.failNext("chat.postMessage", {
    error: "service_unavailable",
    status: 503,
    stored: true,
  });
  const { ts } = await harness.mention("where is order 1042?");
  harness.slack.failNext("chat.postMessage", { error: "ratelimited", retryAfter: 1 });
  const task = await harness.until("the task to finish", () => finishedTask(harness.db.db, ts));
  const thread = harness.slack.messagesIn(CHANNEL, ts).slice(1);
  assert.deepEqual(
    thread.map((m) => m.username),
    ["Customer Service", "Fulfillment", "Inventory", "Fulfillment", "Customer Service"],
    "each message once: the stored one was found in the thread, the rate-limited one waited",
  );
  const outbox = await harness.db.db
    .selectFrom("slack_outbox")
    .select(["status", "slack_ts", "attempts"])
    .where("task_id", "=", task.id)
    .orderBy("id")
    .execute();
  assert.deepEqual(
    outbox.map((r) => [r.status, r.slack_ts]),
    thread.map((m) => ["sent", m.ts]),
  );
  assert.deepEqual(
    outbox.map((r) => r.attempts),
    [1, 0, 0, 0, 0],
    "the lost answer went back to the outbox; the rate limit was waited out, no failed try",
  );
});
