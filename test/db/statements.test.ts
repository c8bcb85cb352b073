import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { Writable } from "node:stream";
import { after, before, beforeEach, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { sql } from "kysely";
import { serverCpuMeter } from "../../scripts/bench-chain.ts";
import type { ChatSurface } from "../../src/core/ports.ts";
import { openDatabase } from "../../src/db/database.ts";
import {
  claimLease,
  endedWithUnreadReplyQuery,
  findOrphanedTasks,
  releaseLease,
} from "../../src/db/lease.repository.ts";
import { audit, insertToolCall } from "../../src/db/ledger.repository.ts";
import { lockRateLimit, toolRunsWithin } from "../../src/db/rate-limits.repository.ts";
import { insertInput } from "../../src/db/turn-reads.repository.ts";
import {
  type FailedTry,
  type JobQueue,
  startJobQueue,
  TASK_QUEUE,
  WAITING_JOBS_SQL,
} from "../../src/jobs/queue.ts";
import { createLogger } from "../../src/log.ts";
import { createMetrics } from "../../src/metrics.ts";
import { recordFailedTry } from "../../src/runtime/failed-tries.ts";
import { deliverOutbox } from "../../src/runtime/outbox.ts";
import {
  createTestDatabase,
  databaseForFile,
  insertOrderTask,
  type TestDatabase,
  waitingOnLocks,
} from "../support/db.ts";
import { emulatedChat } from "../support/emulated-chat.ts";
import * as threads from "../support/outbox-threads.ts";
import { type SlackEmulator, startSlackEmulator } from "../support/slack-emulator.ts";

// What Baton's statements rely on in Postgres: statements prepared once, locks that keep work in
// turn (a tool's rate limit, a thread's outbox), a sweep's query that reads no table whole, the
// append-only audit trail, the job queue's dead letters, the bench's meter of the server's CPU.
// One suite per former test file. The first two read process-wide state (the prepared statements'
// names, this process's CPU time): they run before the others have used either.

describe("prepared-statements", async () => {
  const t = databaseForFile();

  test("statements are prepared once per connection and reused", async () => {
    const db = t.db;
    for (let i = 0; i < 3; i++) {
      const rows = await sql<{ n: number }>`select ${i}::int as n`.execute(db);
      assert.deepEqual(rows.rows, [{ n: i }]);
    }
    const prepared = await db.connection().execute(async (conn) => {
      await sql`select ${1}::int as warm`.execute(conn);
      return sql<{
        statement: string;
      }>`select statement from pg_prepared_statements where statement like ${"%as warm%"}`.execute(
        conn,
      );
    });
    assert.equal(
      prepared.rows.length,
      1,
      "the parameterised statement is a named prepared statement",
    );
  });

  test("a table changed under a prepared statement fails that call once, then works unprepared", async () => {
    const db = t.db;
    await sql`create table widgets (id int primary key)`.execute(db);
    await sql`insert into widgets values (1)`.execute(db);
    const readAll = () =>
      db.connection().execute((conn) => sql`select * from widgets where id = ${1}`.execute(conn));
    // One connection, so the second read meets the plan the first one cached.
    const sameConnection = await db.connection().execute(async (conn) => {
      const first = await sql`select * from widgets where id = ${1}`.execute(conn);
      await sql`alter table widgets add column name text default 'lamp'`.execute(conn);
      const stale = await sql`select * from widgets where id = ${1}`.execute(conn).then(
        () => "worked",
        (error: { code?: string }) => error.code,
      );
      const again = await sql`select * from widgets where id = ${1}`.execute(conn);
      return { first: first.rows, stale, again: again.rows };
    });
    assert.deepEqual(sameConnection.first, [{ id: 1 }]);
    assert.equal(sameConnection.stale, "0A000", "Postgres refuses the stale cached plan");
    assert.deepEqual(
      sameConnection.again,
      [{ id: 1, name: "lamp" }],
      "the retry is sent unprepared",
    );
    assert.deepEqual((await readAll()).rows, [{ id: 1, name: "lamp" }]);
  });
});

describe("bench-server-cpu", async () => {
  const t = databaseForFile();

  test("the bench's server CPU meter counts what the database server spent, and only for a local Postgres", async () => {
    const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(t.db);
    const meter = serverCpuMeter(Number(rows[0]?.pid));
    // Both the embedded server and the machine's run here, as Postgres processes this user can read.
    assert.ok(meter, "a local Postgres is metered");
    const before = meter();
    const started = process.cpuUsage();
    await sql`select count(*) from generate_series(1, 3000000)`.execute(t.db);
    const spent = meter() - before;
    const ours = process.cpuUsage(started);
    // Counting three million rows takes the server tens of milliseconds; this process waits.
    assert.ok(spent > 20, `the server's CPU grew by ${spent.toFixed(1)} ms`);
    assert.ok(spent > (ours.user + ours.system) / 1000, "the server's CPU, not this process's");
    // A process that is not a Postgres backend (this one) is not metered.
    assert.equal(serverCpuMeter(process.pid), undefined);
  });

  test("the meter keeps what a closed connection's server process spent: it never falls", async () => {
    const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(t.db);
    const meter = serverCpuMeter(Number(rows[0]?.pid));
    assert.ok(meter, "a local Postgres is metered");
    const other = openDatabase(t.url, { max: 1 });
    const otherPid = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(other.db);
    const before = meter();
    await sql`select count(*) from generate_series(1, 3000000)`.execute(other.db);
    const spent = meter() - before;
    await other.close();
    const gone = `/proc/${otherPid.rows[0]?.pid}`;
    while (existsSync(gone)) await new Promise((r) => setTimeout(r, 5));
    // Its server process exits with the connection: what it spent stays counted.
    const afterClose = meter() - before;
    assert.ok(spent > 20, `the other connection's process spent ${spent.toFixed(1)} ms`);
    assert.ok(
      afterClose >= spent,
      `${afterClose.toFixed(1)} ms after the close, ${spent.toFixed(1)} before`,
    );
  });
});

describe("rate-limit-lock", async () => {
  const t = databaseForFile();

  const HOUR = 3_600_000;

  test("two turns at a tool's rate limit count in turn: the second sees the first's call", async () => {
    const task = await insertOrderTask(t.db, "1700000000.000100");
    const call = (key: string) => ({
      taskId: task.id,
      stepNo: 1,
      agentId: "billing",
      tool: "issue_refund",
      toolClass: "irreversible",
      args: { order_id: "1077", amount_usd: 40 },
      idempotencyKey: key,
      status: "done" as const,
      result: { refund_id: 1 },
      allowedBy: "policy:autonomous",
    });
    let releaseFirst = () => {};
    const firstHolds = new Promise<void>((resolve) => {
      releaseFirst = resolve;
    });
    let firstLocked = () => {};
    const locked = new Promise<void>((resolve) => {
      firstLocked = resolve;
    });
    const first = t.db.transaction().execute(async (tx) => {
      await lockRateLimit(tx, "tool:issue_refund");
      const seen = await toolRunsWithin(tx, "issue_refund", HOUR);
      firstLocked();
      await firstHolds;
      await insertToolCall(tx, call("a"));
      return seen;
    });
    await locked;
    let secondCounted = false;
    const second = t.db.transaction().execute(async (tx) => {
      await lockRateLimit(tx, "tool:issue_refund");
      secondCounted = true;
      return toolRunsWithin(tx, "issue_refund", HOUR);
    });
    // The second waits on the lock for as long as the first holds it, however long that is.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(secondCounted, false, "the second turn waits for the first to commit");
    releaseFirst();
    assert.equal(await first, 0);
    assert.equal(await second, 1, "the second counts the first's call");
  });
});

describe("outbox-order", async () => {
  // Several deliverers run at once: a click's, the deadline sweep's, the stranded-row sweep of every
  // replica. A thread's messages still go out in order: none is sent past an earlier one that
  // another deliverer has in hand.

  const log = createLogger({ level: "silent" });

  let t: TestDatabase;
  let slack: SlackEmulator;
  let chat: ChatSurface;
  before(async () => {
    t = await createTestDatabase();
    slack = await startSlackEmulator();
    chat = emulatedChat(slack, log);
  });
  beforeEach(() => slack.reset());
  after(async () => {
    await slack.close();
    await t.drop();
  });

  const deliver = (filter: Parameters<typeof deliverOutbox>[1] = {}) =>
    deliverOutbox({ db: t.db, chat, log }, filter);

  const postsOf = (text: string) =>
    slack.callsTo("chat.postMessage").filter((c) => c.args.text === text).length;

  test("a message written while another deliverer sends its thread's earlier one waits for it, then follows it", async () => {
    const a = await threads.newThread(t.db, slack);
    await threads.say(t.db, a, "first");
    // The sweep's post of "first" fails, and its answer is slow to come back.
    slack.failNext("chat.postMessage", { error: "service_unavailable" });
    const slow = slack.holdAnswer("chat.postMessage", (c) => c.args.text === "first");
    const sweep = deliver();
    await slow.arrived;

    // Meanwhile a click decides something and its delivery runs.
    await threads.say(t.db, a, "second");
    assert.equal(
      await deliver({ taskId: a.taskId }),
      0,
      "the click's delivery leaves the thread to the sweep",
    );
    assert.equal(
      postsOf("second"),
      0,
      "nothing went out past the message still in the sweep's hands",
    );

    slow.release();
    assert.equal(await sweep, 0);
    assert.deepEqual(
      threads.threadTexts(slack, a.ts),
      [],
      "the second message did not overtake the first",
    );

    // The next delivery, whoever runs it, sends both in order.
    assert.equal(await deliver({ taskId: a.taskId }), 2);
    assert.deepEqual(threads.threadTexts(slack, a.ts), ["first", "second"]);
    assert.equal(postsOf("second"), 1);
  });

  test("a thread another deliverer holds does not hold back other threads", async () => {
    const a = await threads.newThread(t.db, slack);
    const b = await threads.newThread(t.db, slack);
    await threads.say(t.db, a, "a1");
    await threads.say(t.db, b, "b1");
    const slow = slack.holdAnswer("chat.postMessage", (c) => c.args.text === "a1");
    const click = deliver({ taskId: a.taskId });
    await slow.arrived;
    await threads.say(t.db, a, "a2");
    await threads.say(t.db, b, "b2");

    assert.equal(await deliver(), 2, "the sweep sends b's messages and leaves a's to the click");
    assert.deepEqual(threads.threadTexts(slack, b.ts), ["b1", "b2"]);
    assert.equal(postsOf("a2"), 0);

    slow.release();
    assert.equal(await click, 2);
    assert.deepEqual(threads.threadTexts(slack, a.ts), ["a1", "a2"]);
  });

  test("a run that finds its thread in a sweep's hands sends what the sweep then leaves to it", async () => {
    const a = await threads.newThread(t.db, slack);
    await threads.say(t.db, a, "first");
    const slow = slack.holdAnswer("chat.postMessage", (c) => c.args.text === "first");
    const sweep = deliver();
    await slow.arrived;

    // A click's message (a card's update) queues a run, which takes the task while the sweep sends.
    await threads.say(t.db, a, "second");
    assert.ok(await claimLease(t.db, a.taskId, "worker-a", 60_000));
    let runDone = false;
    const run = deliver({ taskId: a.taskId, olderThanMs: 0, holdsLease: true }).finally(() => {
      runDone = true;
    });
    // The run's delivery reads the thread while the sweep still holds it.
    for (let n = 0; !runDone && (await waitingOnLocks(t.db)) === 0; n++) {
      assert.ok(n < 500, "the run's delivery neither ended nor waited on the sweep's rows");
      await sleep(10);
    }

    // The sweep lets go; its follow-up leaves a leased task's rows to the run, not to the next sweep.
    slow.release();
    assert.equal(await sweep, 1);
    assert.equal(await run, 1, "the run sends the row the sweep left to it");
    assert.deepEqual(threads.threadTexts(slack, a.ts), ["first", "second"]);
    assert.equal(postsOf("first"), 1);
    await releaseLease(t.db, a.taskId, "worker-a");
  });
});

describe("orphan-sweep-scan", async () => {
  const t = databaseForFile();

  // The maintenance sweep runs every 15 s on every replica. It looks for ended tasks a dead run left
  // leased with a reply unread: a handful at most, among every task ever answered, and among the
  // replies in threads people hold (which no agent reads). Neither may be read whole to find them.
  test("the sweep finds a dead run's ended task with an unread reply without reading every task", async () => {
    await sql`insert into tasks (channel_id, thread_ts, requester_id, title, request_text, status,
      owner_kind, owner_id)
    select 'C0ORDERS', g::text, 'U0DANA', 'where is my order?', 'where is my order?',
      case when g % 10 = 0 then 'waiting_human' else 'done' end,
      case when g % 10 = 0 then 'human' else 'agent' end,
      case when g % 10 = 0 then 'U0LEAD' else 'customer-service' end
    from generate_series(1, 30000) g`.execute(t.db);
    await sql`insert into task_inputs (task_id, author_id, text)
    select id, 'U0DANA', 'any news?' from tasks where owner_kind = 'human'`.execute(t.db);
    // The dead run's: answered, its lease run out, a reply unread.
    const dead = await insertOrderTask(t.db, "dead.1");
    await t.db
      .updateTable("tasks")
      .set({
        status: "done",
        lease_owner: "w/1",
        lease_until: sql<Date>`now() - interval '1 minute'`,
      })
      .where("id", "=", dead.id)
      .execute();
    await t.db
      .transaction()
      .execute((tx) => insertInput(tx, { taskId: dead.id, authorId: "U0DANA", text: "and 1078?" }));
    await sql`analyze tasks`.execute(t.db);
    await sql`analyze task_inputs`.execute(t.db);

    assert.deepEqual(await findOrphanedTasks(t.db, 100), [dead.id]);
    const plan = (await endedWithUnreadReplyQuery(t.db, 100).explain())
      .map((r) => String(r["QUERY PLAN"]))
      .join("\n");
    assert.doesNotMatch(plan, /Seq Scan on (tasks|task_inputs)/, plan);
    assert.match(plan, /tasks_ended_leased_idx/, plan);
  });
});

describe("sweep-waiting-jobs", async () => {
  // For each task no run holds, the sweep looks for the task's waiting jobs: one held back for a
  // run that never began runs now; a failed try's backoff is kept.
  let t: TestDatabase;
  let queue: JobQueue;
  before(async () => {
    t = await createTestDatabase();
    queue = await startJobQueue({
      url: t.url,
      log: createLogger({ level: "silent" }),
      metrics: createMetrics(),
      retries: 2,
    });
  });
  after(async () => {
    await queue.stop(10_000);
    await t.drop();
  });

  /** The task's waiting jobs: each one's state and, by the database's clock, whether it is due. */
  async function waitingJobs(taskId: string) {
    const { rows } = await sql<{ state: string; start_after: Date; due: boolean }>`
    select state, start_after, start_after <= now() as due from pgboss.job
    where name = ${TASK_QUEUE} and singleton_key = ${taskId} and state < 'active'
    order by created_on`.execute(t.db);
    return rows;
  }

  /** A job's try failed: pg-boss keeps it waiting out its backoff, as it does after a failed try. */
  async function inBackoff(jobId: string) {
    await sql`update pgboss.job set state = 'retry', retry_count = 1,
      start_after = now() + interval '1 minute'
    where name = ${TASK_QUEUE} and id = ${jobId}::uuid`.execute(t.db);
  }

  test("a held-back job runs now; a job in its backoff, or one beside it, keeps waiting", async () => {
    await queue.tasks.enqueue(t.db, "held", { startAfterSeconds: 120 });
    await queue.tasks.enqueueUnlessWaiting(t.db, "held");
    assert.deepEqual(
      (await waitingJobs("held")).map((j) => [j.state, j.due]),
      [["created", true]],
      "brought forward, and no other job queued",
    );

    await inBackoff(await queue.tasks.enqueue(t.db, "backoff"));
    const backoff = await waitingJobs("backoff");
    await queue.tasks.enqueueUnlessWaiting(t.db, "backoff");
    assert.deepEqual(await waitingJobs("backoff"), backoff, "the retry keeps its backoff");

    await inBackoff(await queue.tasks.enqueue(t.db, "both"));
    await queue.tasks.enqueue(t.db, "both", { startAfterSeconds: 120 });
    const both = await waitingJobs("both");
    await queue.tasks.enqueueUnlessWaiting(t.db, "both");
    assert.deepEqual(await waitingJobs("both"), both, "nothing runs before the backoff ends");
  });

  test("the sweep's look at a task's waiting jobs reads pg-boss's index, with a generic plan", async () => {
    // A busy queue's history: many finished jobs, some waiting.
    await sql`insert into pgboss.job (name, data, state, singleton_key, completed_on)
    select ${TASK_QUEUE}, jsonb_build_object('taskId', 'task-' || g), 'completed', 'task-' || g, now()
    from generate_series(1, 20000) g`.execute(t.db);
    await sql`insert into pgboss.job (name, data, singleton_key)
    select ${TASK_QUEUE}, jsonb_build_object('taskId', 'waiting-' || g), 'waiting-' || g
    from generate_series(1, 200) g`.execute(t.db);
    await sql`analyze pgboss.job`.execute(t.db);

    const plan = await t.db.connection().execute(async (c) => {
      await sql`set plan_cache_mode = force_generic_plan`.execute(c);
      try {
        await sql.raw(`prepare waiting_jobs(text) as ${WAITING_JOBS_SQL}`).execute(c);
        const { rows } = await sql
          .raw<{ "QUERY PLAN": string }>("explain execute waiting_jobs('waiting-7')")
          .execute(c);
        return rows.map((r) => r["QUERY PLAN"]).join("\n");
      } finally {
        await sql`deallocate all`.execute(c);
        await sql`reset plan_cache_mode`.execute(c);
      }
    });
    assert.doesNotMatch(plan, /Seq Scan/, plan);
    assert.match(plan, /Index Scan/, plan);
  });
});

describe("audit-append-only", async () => {
  // The audit trail is append-only: no statement rewrites or empties it, whoever sends it.

  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase();
    await audit(t.db, {
      taskId: null,
      actor: { kind: "system", id: "baton" },
      kind: "test",
      data: {},
    });
  });
  after(() => t.drop());

  const appendOnly = /audit_events is append-only/;

  test("an audit event cannot be updated or deleted", async () => {
    await assert.rejects(sql`update audit_events set kind = 'other'`.execute(t.db), appendOnly);
    await assert.rejects(sql`delete from audit_events`.execute(t.db), appendOnly);
  });

  test("the audit trail cannot be truncated", async () => {
    await assert.rejects(sql`truncate audit_events`.execute(t.db), appendOnly);
    const { count } = await t.db
      .selectFrom("audit_events")
      .select((eb) => eb.fn.countAll<string>().as("count"))
      .executeTakeFirstOrThrow();
    assert.equal(Number(count), 1);
  });
});

describe("dead-letter-failed-at", async () => {
  let t: TestDatabase;
  let queue: JobQueue;
  before(async () => {
    t = await createTestDatabase();
    queue = await startJobQueue({
      url: t.url,
      log: createLogger({ level: "silent" }),
      metrics: createMetrics(),
      retries: 1,
    });
  });
  after(async () => {
    await queue.stop(10_000);
    await t.drop();
  });

  // A dead letter halts its task only if the task has not moved since the job's last try failed:
  // the letter must say when that was, by the database's clock, which stamps the task's activity.
  test("a dead letter says when its job's last try failed", async () => {
    const tries: Date[] = [];
    const failures: FailedTry[] = [];
    await queue.workTasks(
      1,
      async () => {
        const { rows } = await sql<{ now: Date }>`select clock_timestamp() as now`.execute(t.db);
        tries.push(rows[0]?.now ?? new Date(0));
        throw new Error("the model server is down");
      },
      async (failed) => {
        failures.push(failed);
      },
    );
    const letter = new Promise<{ taskId: string; reason: string; failedAt: Date }>((resolve) => {
      void queue.workDeadLetters(async (taskId, reason, failedAt) =>
        resolve({ taskId, reason, failedAt }),
      );
    });
    const jobId = await queue.tasks.enqueue(t.db, "task-1");
    const read = await letter;

    assert.equal(read.taskId, "task-1");
    assert.match(read.reason, /model server is down/);
    assert.equal(tries.length, 2, "one try and one retry");
    assert.deepEqual(
      failures.map((f) => [f.taskId, f.retried, (f.error as Error).message]),
      [
        ["task-1", true, "the model server is down"],
        ["task-1", false, "the model server is down"],
      ],
      "each failed try is heard, the last as not retried",
    );
    assert.ok(read.failedAt instanceof Date, `failedAt: ${read.failedAt}`);
    const last = tries.at(-1) ?? new Date(0);
    assert.ok(
      read.failedAt >= last,
      `failed at ${read.failedAt.toISOString()}, after the last try`,
    );
    const { rows } = await sql<{ completed_on: Date }>`
    select completed_on from pgboss.job where id = ${jobId}`.execute(t.db);
    assert.equal(read.failedAt.getTime(), rows[0]?.completed_on.getTime(), "when the job failed");
  });

  test("a failed try's audit, with the database away, is logged and does not fail the job's handling", async () => {
    const { port } = new URL(t.url);
    // A port nothing listens on: the connection is refused, as with a database that went away.
    const away = openDatabase(t.url.replace(`:${port}/`, ":1/"), { max: 1 });
    const warned: string[] = [];
    const destination = new Writable({
      write(chunk, _encoding, done) {
        warned.push((JSON.parse(String(chunk)) as { msg: string }).msg);
        done();
      },
    });
    const log = createLogger({ level: "warn", destination });
    try {
      await recordFailedTry(
        { db: away.db, log },
        { taskId: "00000000-0000-4000-8000-000000000000", error: new Error("boom"), retried: true },
      );
    } finally {
      await away.close();
    }
    assert.deepEqual(warned, ["could not audit a failed try of the task"]);
  });
});
