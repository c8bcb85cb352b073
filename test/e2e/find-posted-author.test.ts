import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { deliverOutbox } from "../../src/runtime/outbox.ts";
import { OUTBOX_EVENT } from "../../src/slack/find-posted.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import * as threads from "../support/outbox-threads.ts";
import { SLACK_DEFAULTS, type SlackMessage } from "../support/slack-emulator.ts";

// A row whose delivery may have reached Slack is looked for in its thread before it is sent again.
// Only a message Baton posted itself counts: anyone can post a message with Baton's metadata (the
// outbox ids are a sequence), and one that counted would make Baton skip the real post.

let h: Harness;
before(async () => {
  h = await startHarness({ script: () => ({ content: "unused" }) });
});
after(async () => {
  await h.close();
});

/** The thread's one queued row, and Slack's metadata for it, as Baton attaches it. */
async function queued(thread: threads.Thread) {
  const row = await h.db.db
    .selectFrom("slack_outbox")
    .select("id")
    .where("task_id", "=", thread.taskId)
    .executeTakeFirstOrThrow();
  const metadata = { event_type: OUTBOX_EVENT, event_payload: { outbox_id: String(row.id) } };
  return { id: row.id, metadata };
}

/** A sweep of stranded rows: each is looked for in Slack before it is sent. */
const sweep = () => deliverOutbox(h.baton.deps, { olderThanMs: 0 });

const bySelf = (m: SlackMessage) => m.bot_id === SLACK_DEFAULTS.botId;

const outboxRow = (id: string) =>
  h.db.db
    .selectFrom("slack_outbox")
    .select(["status", "slack_ts"])
    .where("id", "=", id)
    .executeTakeFirstOrThrow();

test("a look-alike of Baton's message posted by a person or another app does not stop the real post", async () => {
  const lookAlikes = [
    { user: "U0MALLORY" },
    { user: "U0OTHERBOT", botId: "B0OTHERBOT", appId: "A0OTHERAPP" },
  ];
  for (const author of lookAlikes) {
    const thread = await threads.newThread(h.db.db, h.slack);
    await threads.say(h.db.db, thread, "Order 1042 ships today.");
    const row = await queued(thread);
    const fake = h.slack.addMessage({
      channel: threads.THREADS_CHANNEL,
      threadTs: thread.ts,
      text: "Order 1042 ships today.",
      metadata: row.metadata,
      ...author,
    });

    assert.equal(await sweep(), 1);
    const replies = h.slack.messagesIn(threads.THREADS_CHANNEL, thread.ts).slice(1);
    const own = replies.filter(bySelf);
    assert.equal(own.length, 1, `Baton posted its message beside ${author.user}'s look-alike`);
    assert.deepEqual(await outboxRow(row.id), { status: "sent", slack_ts: own[0]?.ts });
    assert.notEqual(own[0]?.ts, fake.ts);
  }
});

test("Baton's own message, posted before its answer was lost, is found and not posted again", async () => {
  const thread = await threads.newThread(h.db.db, h.slack);
  await threads.say(h.db.db, thread, "Order 1077 is on its way.");
  const row = await queued(thread);
  const posted = h.slack.addMessage({
    channel: threads.THREADS_CHANNEL,
    threadTs: thread.ts,
    text: "Order 1077 is on its way.",
    metadata: row.metadata,
    user: SLACK_DEFAULTS.botUserId,
    botId: SLACK_DEFAULTS.botId,
    appId: SLACK_DEFAULTS.appId,
  });

  assert.equal(await sweep(), 1);
  assert.equal(h.slack.messagesIn(threads.THREADS_CHANNEL, thread.ts).slice(1).length, 1);
  assert.deepEqual(await outboxRow(row.id), { status: "sent", slack_ts: posted.ts });
});
