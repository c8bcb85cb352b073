import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { sql } from "kysely";
import type { ChatIntent, ChatSurface } from "../../src/core/ports.ts";
import { claimLease, releaseLease } from "../../src/db/lease.repository.ts";
import { createLogger } from "../../src/log.ts";
import { deliverOutbox } from "../../src/runtime/outbox.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { emulatedChat } from "../support/emulated-chat.ts";
import * as threads from "../support/outbox-threads.ts";
import { type SlackEmulator, startSlackEmulator } from "../support/slack-emulator.ts";

// A run that dies while Slack takes its message leaves the row unmarked and the task's lease to run
// out. Whoever delivers the row next (the digest's pass, a click's, the next run) looks in Slack
// first, however young the row: a lease may run out sooner than a row counts as stranded by age.

const log = createLogger({ level: "silent" });

let t: TestDatabase;
let slack: SlackEmulator;
let chat: ChatSurface;
before(async () => {
  t = await createTestDatabase();
  slack = await startSlackEmulator();
  chat = emulatedChat(slack, log);
});
after(async () => {
  await slack.close();
  await t.drop();
});

/** The thread's one row: posted to Slack by its run, which died before marking it sent. */
async function postedByARunThatDied(worker: string) {
  const thread = await threads.newThread(t.db, slack);
  assert.ok(await claimLease(t.db, thread.taskId, worker, 60_000));
  await threads.say(t.db, thread, "I corrected the stock count.");
  const row = await t.db
    .selectFrom("slack_outbox")
    .select(["id", "payload"])
    .where("task_id", "=", thread.taskId)
    .executeTakeFirstOrThrow();
  const { intent } = row.payload as unknown as { intent: ChatIntent };
  const posted = await chat.deliver(intent, row.id);
  return { thread, rowId: row.id, ts: posted.ts };
}

async function rowOf(id: string) {
  return t.db
    .selectFrom("slack_outbox")
    .select(["status", "slack_ts"])
    .where("id", "=", id)
    .executeTakeFirstOrThrow();
}

test("a row whose run died with the lease is looked for in Slack, not posted again, however young", async () => {
  const { thread, rowId, ts } = await postedByARunThatDied("worker-dead");
  await sql`update tasks set lease_until = now() - interval '1 second' where id = ${thread.taskId}`.execute(
    t.db,
  );

  // The digest's pass delivers whatever is due, a second after the row was written.
  assert.equal(await deliverOutbox({ db: t.db, chat, log }), 1);
  assert.deepEqual(threads.threadTexts(slack, thread.ts), ["I corrected the stock count."]);
  assert.deepEqual(await rowOf(rowId), { status: "sent", slack_ts: ts });
});

test("a row of a task whose run let go of the lease is sent without looking", async () => {
  const thread = await threads.newThread(t.db, slack);
  assert.ok(await claimLease(t.db, thread.taskId, "worker-alive", 60_000));
  await threads.say(t.db, thread, "Order 1042 is on the way.");
  await releaseLease(t.db, thread.taskId, "worker-alive");
  const looked = slack.callsTo("conversations.replies").length;

  assert.equal(await deliverOutbox({ db: t.db, chat, log }), 1);
  assert.deepEqual(threads.threadTexts(slack, thread.ts), ["Order 1042 is on the way."]);
  assert.equal(slack.callsTo("conversations.replies").length, looked, "no search for a fresh row");
});
