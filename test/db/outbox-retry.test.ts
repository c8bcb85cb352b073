import assert from "node:assert/strict";
import { after, before, beforeEach, test } from "node:test";
import { sql } from "kysely";
import type { ChatSurface } from "../../src/core/ports.ts";
import { claimLease, releaseLease } from "../../src/db/lease.repository.ts";
import { createLogger } from "../../src/log.ts";
import { deliverOutbox, retryDelayMs } from "../../src/runtime/outbox.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { emulatedChat } from "../support/emulated-chat.ts";
import * as threads from "../support/outbox-threads.ts";
import { type SlackEmulator, startSlackEmulator } from "../support/slack-emulator.ts";

// A Slack outage, or a stretch of 429s, must not lose what Baton decided to say: a row that Slack
// failed to take waits and is tried again, for as long as it takes, and its thread waits behind it.

const log = createLogger({ level: "silent" });
const SLACK_DOWN = { error: "service_unavailable" };

let t: TestDatabase;
let slack: SlackEmulator;
let chat: ChatSurface;
before(async () => {
  t = await createTestDatabase();
  slack = await startSlackEmulator();
  chat = emulatedChat(slack, log);
});
// A test that failed leaves no failures queued for the next one.
beforeEach(() => slack.reset());
after(async () => {
  await slack.close();
  await t.drop();
});

const deliver = (filter: Parameters<typeof deliverOutbox>[1] = {}) =>
  deliverOutbox({ db: t.db, chat, log }, filter);

async function rowsOf(taskId: string) {
  return t.db
    .selectFrom("slack_outbox")
    .select(["status", "attempts"])
    .where("task_id", "=", taskId)
    .orderBy("id")
    .execute();
}

/** Seconds until the task's first row may be tried again. */
async function waitLeft(taskId: string): Promise<number> {
  const row = await t.db
    .selectFrom("slack_outbox")
    .select(sql<number>`extract(epoch from next_attempt_at - now())::float8`.as("left"))
    .where("task_id", "=", taskId)
    .orderBy("id")
    .executeTakeFirstOrThrow();
  return row.left;
}

/** Time passes: every row waiting to be tried again is due. */
async function waitsRunOut() {
  await sql`update slack_outbox set next_attempt_at = now() - interval '1 second'
    where next_attempt_at is not null`.execute(t.db);
}

/** Calls to post in the thread (failed ones too). */
const posts = (ts: string) =>
  slack.callsTo("chat.postMessage").filter((c) => c.args.thread_ts === ts).length;

test("a row may go again at the next chance after one failure, then waits 2 s doubling to 5 min", () => {
  assert.deepEqual(
    [1, 2, 3, 8, 9, 10, 1000].map(retryDelayMs),
    [0, 2_000, 4_000, 128_000, 256_000, 300_000, 300_000],
  );
});

test("a message Slack fails to take ten times is sent once Slack answers again, its thread in order", async () => {
  const a = await threads.newThread(t.db, slack);
  await threads.say(t.db, a, "first");
  await threads.say(t.db, a, "second");
  slack.failNext("chat.postMessage", SLACK_DOWN, 10);

  const waits: number[] = [];
  for (let i = 1; i <= 10; i++) {
    await waitsRunOut();
    assert.equal(await deliver({ taskId: a.taskId }), 0);
    assert.deepEqual(
      await rowsOf(a.taskId),
      [
        { status: "retry", attempts: i },
        { status: "pending", attempts: 0 },
      ],
      `after ${i} failures the message still waits, and the one after it too`,
    );
    waits.push(Math.max(0, Math.round(await waitLeft(a.taskId))));
  }
  assert.deepEqual(waits, [0, 2, 4, 8, 16, 32, 64, 128, 256, 300], "seconds, growing, capped");

  await waitsRunOut();
  assert.equal(await deliver({ taskId: a.taskId }), 2);
  assert.deepEqual(threads.threadTexts(slack, a.ts), ["first", "second"], "each once, in order");
  assert.deepEqual(await rowsOf(a.taskId), [
    { status: "sent", attempts: 10 },
    { status: "sent", attempts: 0 },
  ]);
});

test("a message Slack refuses for good is dead at once and never tried again", async () => {
  const a = await threads.newThread(t.db, slack);
  await threads.say(t.db, a, "too long");
  await threads.say(t.db, a, "next");
  slack.failNext("chat.postMessage", { error: "msg_too_long" });

  assert.equal(await deliver({ taskId: a.taskId }), 1);
  assert.deepEqual(await rowsOf(a.taskId), [
    { status: "dead", attempts: 1 },
    { status: "sent", attempts: 0 },
  ]);
  const before = posts(a.ts);
  await waitsRunOut();
  assert.equal(await deliver({ taskId: a.taskId }), 0);
  assert.equal(await deliver(), 0);
  assert.equal(posts(a.ts), before, "nothing is posted again");
  assert.deepEqual(threads.threadTexts(slack, a.ts), ["next"]);
});

test("a row waiting to be tried again is not sent early by any path, nor are the rows behind it", async () => {
  const a = await threads.newThread(t.db, slack);
  await threads.say(t.db, a, "first");
  await threads.say(t.db, a, "second");
  // Failed twice: the second failure makes it wait.
  slack.failNext("chat.postMessage", SLACK_DOWN, 2);
  assert.equal(await deliver({ taskId: a.taskId }), 0);
  assert.equal(await deliver({ taskId: a.taskId }), 0);
  assert.ok((await waitLeft(a.taskId)) > 1);
  const before = posts(a.ts);

  // A click's delivery, the sweep, a stranded-row sweep, and the run that holds the lease.
  assert.equal(await deliver({ taskId: a.taskId }), 0);
  assert.equal(await deliver(), 0);
  assert.equal(await deliver({ olderThanMs: 0 }), 0);
  assert.ok(await claimLease(t.db, a.taskId, "worker-a", 60_000));
  assert.equal(await deliver({ taskId: a.taskId, olderThanMs: 0, holdsLease: true }), 0);
  assert.equal(posts(a.ts), before, "Slack was not asked again before the wait ran out");
  assert.deepEqual(threads.threadTexts(slack, a.ts), []);

  await waitsRunOut();
  assert.equal(await deliver({ taskId: a.taskId, holdsLease: true }), 2);
  assert.deepEqual(threads.threadTexts(slack, a.ts), ["first", "second"]);
  await releaseLease(t.db, a.taskId, "worker-a");
});

test("in the sweep, a task whose row fails waits alone: other tasks' rows go out", async () => {
  const a = await threads.newThread(t.db, slack);
  const b = await threads.newThread(t.db, slack);
  await threads.say(t.db, a, "a1");
  await threads.say(t.db, b, "b1");
  await threads.say(t.db, a, "a2");
  await threads.say(t.db, b, "b2");
  slack.failNext("chat.postMessage", SLACK_DOWN);

  assert.equal(await deliver(), 2);
  assert.deepEqual(threads.threadTexts(slack, b.ts), ["b1", "b2"]);
  assert.deepEqual(threads.threadTexts(slack, a.ts), [], "a2 waits behind a1");
  assert.deepEqual(await rowsOf(a.taskId), [
    { status: "retry", attempts: 1 },
    { status: "pending", attempts: 0 },
  ]);

  await waitsRunOut();
  assert.equal(await deliver(), 2);
  assert.deepEqual(threads.threadTexts(slack, a.ts), ["a1", "a2"]);
});

test("while Slack is down, a sweep stops after three failed calls instead of trying every thread", async () => {
  const many = [
    await threads.newThread(t.db, slack),
    await threads.newThread(t.db, slack),
    await threads.newThread(t.db, slack),
    await threads.newThread(t.db, slack),
  ];
  for (const [i, th] of many.entries()) await threads.say(t.db, th, `message ${i}`);
  // Down for three calls: had the pass gone on, the fourth thread's message would have gone out.
  slack.failNext("chat.postMessage", SLACK_DOWN, 3);

  assert.equal(await deliver(), 0);
  assert.equal(slack.callsTo("chat.postMessage").length, 3, "three tries, then the pass stops");
  const tried = await Promise.all(many.map(async (th) => (await rowsOf(th.taskId))[0]));
  assert.deepEqual(
    tried.map((r) => r?.attempts),
    [1, 1, 1, 0],
    "the last thread was not tried, and not counted as tried",
  );

  await waitsRunOut();
  assert.equal(await deliver(), 4, "once Slack answers, every thread's message goes out");
  for (const [i, th] of many.entries())
    assert.deepEqual(threads.threadTexts(slack, th.ts), [`message ${i}`]);
});
