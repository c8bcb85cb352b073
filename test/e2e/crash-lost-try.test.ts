import assert from "node:assert/strict";
import { test } from "node:test";
import { sql } from "kysely";
import { PgBoss } from "pg-boss";
import { LOST_TRY } from "../../src/db/lease.repository.ts";
import { TASK_QUEUE } from "../../src/jobs/queue.ts";
import { auditStory } from "../../src/runtime/audit-story.ts";
import { crashRigs, untilCrash } from "../support/crash-rig.ts";
import { REQUESTER } from "../support/harness.ts";
import { postsInThread, taskWithStatus } from "../support/observe.ts";

// A job's worker killed mid-run (SIGKILL) leaves its job active and the task's lease held. The
// task is taken over once the lease runs out, long before pg-boss expires the job; that claim
// records the lost try. When pg-boss expires the job and retries it, nothing is recorded again.
// A worker killed after its run's answer committed, before the run let the task go, lost nothing:
// the claim that takes the task over records no failed try.
const startRig = crashRigs();

test("a job whose worker died records one failed try, and none again when pg-boss expires and retries the job", async () => {
  const rig = await startRig(async (_request, ctx) => {
    if (ctx.callIndex === 0) return { content: "Order 1042 left the warehouse yesterday." };
    if (ctx.callIndex === 1) {
      // The reply's job is at the model: its worker dies.
      await rig.current?.kill();
      return { status: 500, error: "nobody is listening: the worker was killed" };
    }
    return { content: "Order 1078 ships tomorrow." };
  });
  const { db, slack, model } = rig;
  const dead = await rig.start({ maintenance: false });

  const ts = await rig.mention("where is order 1042?");
  const task = await untilCrash("the answer", () => taskWithStatus(db.db, ts, "done"));
  // Given up by its run: a reply while the run still held it would be queued twice (by the
  // accept, and by the release that finds it open again), and two jobs would die with the worker.
  await untilCrash("the answered task to be let go", async () => {
    const row = await db.db
      .selectFrom("tasks")
      .select("lease_owner")
      .where("id", "=", task.id)
      .executeTakeFirst();
    return row?.lease_owner === null;
  });

  // A reply opens the task again; its job's run is at the model when the process is killed.
  await rig.reply(ts, "and 1078?");
  await dead.exited;
  const { rows: active } = await sql<{ id: string }>`
    select id from pgboss.job
    where name = ${TASK_QUEUE} and data->>'taskId' = ${task.id} and state = 'active'`.execute(
    db.db,
  );
  assert.equal(active.length, 1, "the dead worker's job is left active");
  const left = await db.db
    .selectFrom("tasks")
    .select(["status", "lease_owner"])
    .where("id", "=", task.id)
    .executeTakeFirstOrThrow();
  assert.equal(left.status, "active");
  assert.ok(left.lease_owner?.startsWith(`${dead.workerId}/`), "the dead run still holds the task");

  // Another process takes the task over once the lease runs out, and answers the reply.
  await rig.start({ maintenance: true });
  await untilCrash("the reply to be answered", async () =>
    postsInThread(slack, ts).some((c) => JSON.stringify(c.args).includes("1078 ships")),
  );
  await untilCrash("the task to be answered again", () => taskWithStatus(db.db, ts, "done"));

  // pg-boss expires the dead worker's job (15 minutes on, here at once) and retries it.
  const [job] = active;
  assert.ok(job);
  await sql`update pgboss.job set started_on = now() - interval '1 hour' where id = ${job.id}::uuid`.execute(
    db.db,
  );
  const boss = new PgBoss({ connectionString: db.url, supervise: false, migrate: false });
  await boss.start();
  try {
    await boss.supervise(TASK_QUEUE);
  } finally {
    await boss.stop({ graceful: false });
  }
  await untilCrash("the expired job's retry to run and end", async () => {
    const { rows } = await sql<{ state: string; retry_count: number }>`
      select state, retry_count from pgboss.job where id = ${job.id}::uuid`.execute(db.db);
    return rows[0]?.state === "completed" && rows[0].retry_count === 1;
  });

  const tries = await db.db
    .selectFrom("audit_events")
    .select(["actor_kind", "data"])
    .where("task_id", "=", task.id)
    .where("kind", "=", "attempt_failed")
    .execute();
  assert.equal(tries.length, 1, JSON.stringify(tries));
  const [lost] = tries;
  assert.equal(lost?.actor_kind, "system");
  assert.equal(lost?.data.error, LOST_TRY);
  assert.equal(lost?.data.retried, true);
  assert.match(String(lost?.data.run), new RegExp(`^${dead.workerId}/`));

  const { entries } = await auditStory({ db: db.db }, task.id);
  assert.deepEqual(
    entries.filter((e) => e.kind === "attempt_failed").map((e) => `${e.actor} ${e.text}`),
    [`system Try failed, retried: ${LOST_TRY}`],
  );
  assert.equal(model.requests.length, 3, "the reply was asked of the model once more, no more");
});

test("a worker killed after its answer committed, before letting the task go, lost no try, though a reply opened the task again since", async () => {
  const rig = await startRig(async (_request, ctx) => ({
    content:
      ctx.callIndex === 0
        ? "Order 1042 left the warehouse yesterday."
        : "Order 1078 ships tomorrow.",
  }));
  const { db, slack, model } = rig;
  const dead = await rig.start({ maintenance: false });

  // The answer commits; Slack takes its post and holds its answer, so the run keeps the task.
  const answerPosted = slack.holdAnswer("chat.postMessage", (call) =>
    JSON.stringify(call.args).includes("left the warehouse"),
  );
  const ts = await rig.mention("where is order 1042?");
  await answerPosted.arrived;
  const task = await untilCrash("the answer", () => taskWithStatus(db.db, ts, "done"));

  // The requester replies meanwhile: the answered task opens again, its lease still the run's.
  await rig.reply(ts, "and 1078?");
  await untilCrash("the reply to open the task again", () => taskWithStatus(db.db, ts, "active"));
  await dead.kill();
  await dead.exited;
  answerPosted.release();
  const left = await db.db
    .selectFrom("tasks")
    .select("lease_owner")
    .where("id", "=", task.id)
    .executeTakeFirstOrThrow();
  assert.ok(left.lease_owner?.startsWith(`${dead.workerId}/`), "the dead run still holds the task");

  // Another process takes the task over once the lease runs out, and answers the reply.
  await rig.start({ maintenance: true });
  await untilCrash("the reply to be answered", async () =>
    postsInThread(slack, ts).some((c) => JSON.stringify(c.args).includes("1078 ships")),
  );
  await untilCrash("the task to be answered again", () => taskWithStatus(db.db, ts, "done"));

  const { entries } = await auditStory({ db: db.db }, task.id);
  assert.deepEqual(
    entries.filter((e) => e.kind !== "model_call").map((e) => `${e.actor} ${e.text}`),
    [
      `human:${REQUESTER} Message: "where is order 1042?"`,
      "system Task started with customer-service",
      'agent:customer-service Answered: "Order 1042 left the warehouse yesterday."',
      `human:${REQUESTER} Message: "and 1078?"`,
      `human:${REQUESTER} Reopened by a reply in its thread after its answer; back with agent:customer-service`,
      'agent:customer-service Answered: "Order 1078 ships tomorrow."',
    ],
  );
  assert.equal(model.requests.length, 2, "the answer was not asked for again");
  const answers = postsInThread(slack, ts).filter((c) =>
    JSON.stringify(c.args).includes("left the warehouse"),
  );
  assert.equal(answers.length, 1, "the first answer is in the thread once");
});
