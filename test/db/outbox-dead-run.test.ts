import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { sql } from "kysely";
import type { ChatIntent, ChatSurface } from "../../src/core/ports.ts";
import { sessionName } from "../../src/db/database.ts";
import { claimLease, releaseLease } from "../../src/db/lease.repository.ts";
import type { OutboxMessage } from "../../src/db/outbox.repository.ts";
import { createLogger } from "../../src/log.ts";
import { deliverOutbox } from "../../src/runtime/outbox.ts";
import { runDeliveries } from "../../src/runtime/run-deliveries.ts";
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

test("a young row another process wrote (a click's, its process dead while Slack took it) is looked for first", async () => {
  const thread = await threads.newThread(t.db, slack);
  // A click on one replica: its row, posted, and its process killed before the row was marked.
  await threads.say(t.db, thread, "Dana approved the refund.");
  const row = await t.db
    .selectFrom("slack_outbox")
    .select(["id", "payload"])
    .where("task_id", "=", thread.taskId)
    .executeTakeFirstOrThrow();
  await chat.deliver((row.payload as unknown as { intent: ChatIntent }).intent, row.id);

  // Another replica's click on the same task delivers its rows a moment later.
  const looked = slack.callsTo("conversations.replies").length;
  const other = { db: t.db, chat, log, writer: "baton-another-process" };
  assert.equal(await deliverOutbox(other, { taskId: thread.taskId }), 1);
  assert.deepEqual(threads.threadTexts(slack, thread.ts), ["Dana approved the refund."]);
  assert.equal(slack.callsTo("conversations.replies").length, looked + 1);
});

test("a row this process wrote goes out without looking", async () => {
  const thread = await threads.newThread(t.db, slack);
  await threads.say(t.db, thread, "Order 1042 is on the way.");
  const looked = slack.callsTo("conversations.replies").length;
  const self = { db: t.db, chat, log, writer: await sessionName(t.db) };
  assert.equal(await deliverOutbox(self, { taskId: thread.taskId }), 1);
  assert.deepEqual(threads.threadTexts(slack, thread.ts), ["Order 1042 is on the way."]);
  assert.equal(slack.callsTo("conversations.replies").length, looked, "no search for its own row");
});

test("a run's card whose mark fails keeps the replies posted before it, marked later, never posted again", async () => {
  const thread = await threads.newThread(t.db, slack);
  assert.ok(await claimLease(t.db, thread.taskId, "worker-live", 60_000));
  const message = (text: string, cardOf?: OutboxMessage["cardOf"]): OutboxMessage => ({
    taskId: thread.taskId,
    intent: {
      kind: "agent_reply",
      channel: threads.THREADS_CHANNEL,
      threadTs: thread.ts,
      persona: { name: "Customer Service", icon: "" },
      text,
    },
    ...(cardOf && { cardOf }),
  });
  // One turn's reply and card, as its statement wrote them.
  const messages = [
    message("Checking order 1042."),
    message("card", { table: "approvals", id: "00000000-0000-0000-0000-000000000001" }),
  ];
  const ids = await t.db
    .insertInto("slack_outbox")
    .values(
      messages.map((m) => ({
        task_id: m.taskId,
        method: m.intent.kind,
        payload: JSON.stringify({ intent: m.intent, cardOf: m.cardOf ?? null }),
      })),
    )
    .returning("id")
    .execute();
  // The first statement marking rows sent fails (a connection reset under it); the next ones work.
  await sql`create sequence mark_tries`.execute(t.db);
  await sql
    .raw(`create function fail_first_mark() returns trigger language plpgsql as $$
    begin
      if new.status = 'sent' and nextval('mark_tries') = 1 then raise exception 'connection reset'; end if;
      return new;
    end $$`)
    .execute(t.db);
  await sql`create trigger fail_first_mark before update on slack_outbox
    for each row execute function fail_first_mark()`.execute(t.db);
  try {
    const deliveries = runDeliveries({ db: t.db, chat, log });
    const written = ids.map((r, i) => {
      const written = messages[i];
      assert.ok(written);
      return { id: r.id, message: written };
    });
    deliveries.send(Promise.resolve(written));
    await deliveries.settled();
    assert.equal(deliveries.failed, true, "the card's mark failed");
    // As the run goes on after a failed post: it marks what it posted, then delivers the rest.
    await deliveries.flush();
    await deliverOutbox({ db: t.db, chat, log }, { taskId: thread.taskId, holdsLease: true });
    assert.deepEqual(threads.threadTexts(slack, thread.ts), ["Checking order 1042.", "card"]);
    const rows = await t.db
      .selectFrom("slack_outbox")
      .select("status")
      .where("task_id", "=", thread.taskId)
      .execute();
    assert.deepEqual(
      rows.map((r) => r.status),
      ["sent", "sent"],
    );
  } finally {
    await sql`drop trigger fail_first_mark on slack_outbox`.execute(t.db);
    await sql`drop function fail_first_mark()`.execute(t.db);
    await sql`drop sequence mark_tries`.execute(t.db);
  }
});
