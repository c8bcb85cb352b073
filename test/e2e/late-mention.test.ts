import assert from "node:assert/strict";
import { after, test } from "node:test";
import { CHANNEL, type Harness, REQUESTER, startHarness } from "../support/harness.ts";
import type { Script } from "../support/model-server.ts";
import { finishedTask } from "../support/scripts-humans.ts";

// Slack delivers events in no set order, and retries one Baton failed to take a minute later. A
// reply in a mention's thread can so reach Baton before the mention has made the thread a task:
// it is passed over then, and read once the mention arrives.

const harnesses: Harness[] = [];
after(async () => {
  for (const harness of harnesses) await harness.close();
});

test("a reply that reached Baton before its thread's mention (Slack retried the mention) is read too", async () => {
  const asked: string[] = [];
  const script: Script = async (request) => {
    const seen = JSON.stringify(request.messages);
    asked.push(seen);
    return {
      content: seen.includes("order 1078") ? "Order 1078 ships tomorrow." : "Which order is it?",
    };
  };
  const harness = await startHarness({ script });
  harnesses.push(harness);
  const { ts } = harness.slack.addMessage({
    channel: CHANNEL,
    user: REQUESTER,
    text: "<@U0BATONBOT> where is my order?",
  });
  // Baton failed to take the mention the first time; meanwhile the requester added the number.
  assert.equal((await harness.reply(ts, "it is order 1078")).status, 200);
  assert.equal(
    await finishedTask(harness.db.db, ts),
    undefined,
    "no task yet: the reply is passed over",
  );

  const retried = await harness.mention("where is my order?", { ts, retryNum: 1 });
  assert.equal(retried.status, 200);
  await harness.until("the answer that read the reply", async () =>
    harness.slack.messagesIn(CHANNEL, ts).some((m) => m.text === "Order 1078 ships tomorrow.")
      ? true
      : undefined,
  );
  const task = await harness.until("the task to finish", () => finishedTask(harness.db.db, ts));
  const inputs = await harness.db.db
    .selectFrom("task_inputs")
    .select(["text", "consumed_at_step"])
    .where("task_id", "=", task.id)
    .execute();
  assert.deepEqual(
    inputs.map((i) => i.text),
    ["it is order 1078"],
    "the reply is read once",
  );
  assert.ok(inputs.every((i) => i.consumed_at_step !== null));

  // Slack retrying the mention once more reads the thread again and adds nothing.
  assert.equal((await harness.mention("where is my order?", { ts, retryNum: 2 })).status, 200);
  const again = await harness.db.db
    .selectFrom("task_inputs")
    .select("text")
    .where("task_id", "=", task.id)
    .execute();
  assert.equal(again.length, 1);

  // A mention that arrives on time does not read its thread.
  const before = harness.slack.callsTo("conversations.replies").length;
  const fresh = await harness.mention("where is order 1042?");
  await harness.until("the on-time task to finish", () => finishedTask(harness.db.db, fresh.ts));
  assert.equal(harness.slack.callsTo("conversations.replies").length, before);
});

test("a late mention whose thread Slack fails to show: retried while Slack is down, let go when Slack refuses", async () => {
  const script: Script = async (request) => ({
    content: JSON.stringify(request.messages).includes("order 1078")
      ? "Order 1078 ships tomorrow."
      : "Which order is it?",
  });
  const harness = await startHarness({ script });
  harnesses.push(harness);
  const mention = () =>
    harness.slack.addMessage({
      channel: CHANNEL,
      user: REQUESTER,
      text: "<@U0BATONBOT> where is my order?",
    }).ts;

  // Slack is down: the mention is not acknowledged, so Slack sends it again, and that one reads
  // the reply.
  const a = mention();
  await harness.reply(a, "it is order 1078");
  harness.slack.failNext("conversations.replies", { error: "service_unavailable" });
  assert.equal((await harness.mention("where is my order?", { ts: a, retryNum: 1 })).status, 500);
  assert.equal((await harness.mention("where is my order?", { ts: a, retryNum: 2 })).status, 200);
  await harness.until("the answer that read the reply", async () =>
    harness.slack.messagesIn(CHANNEL, a).some((m) => m.text === "Order 1078 ships tomorrow.")
      ? true
      : undefined,
  );

  // Slack refuses (the thread is gone): the task goes on without the replies; a retry would fail
  // the same way.
  const b = mention();
  harness.slack.failNext("conversations.replies", { error: "thread_not_found" });
  assert.equal((await harness.mention("where is my order?", { ts: b, retryNum: 1 })).status, 200);
  await harness.until("the task to finish", () => finishedTask(harness.db.db, b));
});
