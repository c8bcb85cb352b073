import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { sql } from "kysely";
import { deliverOutbox } from "../../src/runtime/outbox.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import * as threads from "../support/outbox-threads.ts";

// The sweep sends a thread's rows holding them locked, so that no other deliverer sends them too
// or past each other. Slack's 429 asks to wait (Retry-After, up to a minute): the sweep lets go at
// once, neither keeping those locks nor a transaction open nor sleeping (a deadline's or a digest's
// delivery would wait behind it). The thread still goes out in order, each message once, after the
// wait.

let h: Harness;
before(async () => {
  h = await startHarness({ script: () => ({ content: "unused" }) });
});
after(async () => {
  await h.close();
});

/** Sessions other than this one holding slack_outbox rows locked, or sitting in a transaction. */
async function holders(): Promise<{ locking: number; inTransaction: number }> {
  const { rows } = await sql<{ locking: number; inTransaction: number }>`
    select
      (select count(*)::int from pg_locks l join pg_class c on c.oid = l.relation
        where c.relname = 'slack_outbox' and l.mode = 'RowShareLock'
          and l.pid <> pg_backend_pid()) as "locking",
      (select count(*)::int from pg_stat_activity
        where datname = current_database() and pid <> pg_backend_pid()
          and state like 'idle in transaction%') as "inTransaction"`.execute(h.db.db);
  return rows[0] ?? { locking: -1, inTransaction: -1 };
}

const postsOf = (text: string) =>
  h.slack
    .callsTo("chat.postMessage")
    .filter((c) => c.args.text === text)
    .map((c) => c.failed ?? "ok");

test("a sweep that Slack asks to wait (429) lets go at once; the thread goes after the wait, in order, once", async () => {
  const thread = await threads.newThread(h.db.db, h.slack);
  await threads.say(h.db.db, thread, "first");
  await threads.say(h.db.db, thread, "second");
  h.slack.failNext("chat.postMessage", { error: "ratelimited", retryAfter: 30 });

  assert.equal(await deliverOutbox(h.baton.deps, { olderThanMs: 0 }), 0, "nothing sent, no wait");
  assert.deepEqual(postsOf("first"), ["ratelimited"]);
  assert.deepEqual(await holders(), { locking: 0, inTransaction: 0 }, "nothing held");
  const [deferred] = await h.db.db
    .selectFrom("slack_outbox")
    .select(sql<number>`extract(epoch from next_attempt_at - clock_timestamp())`.as("inS"))
    .where("task_id", "=", thread.taskId)
    .orderBy("id")
    .execute();
  assert.ok(deferred && deferred.inS > 20 && deferred.inS <= 30, `due in ${deferred?.inS} s`);

  // Before the wait is over, a click's delivery for the task and another replica's sweep send
  // nothing: not the second message past the first, nor the first again.
  assert.equal(await deliverOutbox(h.baton.deps, { taskId: thread.taskId }), 0);
  assert.equal(await deliverOutbox(h.baton.deps, { olderThanMs: 0 }), 0);
  assert.deepEqual(postsOf("first"), ["ratelimited"]);
  assert.deepEqual(postsOf("second"), []);

  // The wait is over (as if 30 s had passed): the next sweep sends both, in order.
  await h.db.db
    .updateTable("slack_outbox")
    .set({ next_attempt_at: sql<Date>`clock_timestamp()` })
    .where("task_id", "=", thread.taskId)
    .where("status", "=", "retry")
    .execute();
  assert.equal(await deliverOutbox(h.baton.deps, { olderThanMs: 0 }), 2);
  assert.deepEqual(threads.threadTexts(h.slack, thread.ts), ["first", "second"]);
  assert.deepEqual(postsOf("first"), ["ratelimited", "ok"]);
  assert.deepEqual(postsOf("second"), ["ok"]);
  const rows = await h.db.db
    .selectFrom("slack_outbox")
    .select(["status", "attempts"])
    .where("task_id", "=", thread.taskId)
    .orderBy("id")
    .execute();
  assert.deepEqual(
    rows,
    [
      { status: "sent", attempts: 0 },
      { status: "sent", attempts: 0 },
    ],
    "a 429 is no failed try: Slack stored nothing",
  );
});
