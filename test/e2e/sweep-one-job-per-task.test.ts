import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { sql } from "kysely";
import { TASK_QUEUE } from "../../src/jobs/queue.ts";
import { runMaintenance } from "../../src/runtime/maintenance.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { taskWithStatus } from "../support/observe.ts";

// The model server is down. The maintenance sweep, every 15 s on every replica, queues a job for
// each active task no run holds: one whose job waits to retry must not get another chain of
// retries each time (each chain asks the model again, and ends in its own dead letter).
let h: Harness;
let down = true;
before(async () => {
  h = await startHarness({
    script: () =>
      down
        ? { status: 503, error: "the model server is down" }
        : { content: "Order 1042 left the warehouse yesterday." },
  });
});
after(async () => {
  await h.close();
});

/** The task's jobs by state, as pg-boss keeps them. */
async function jobsOf(taskId: string): Promise<Record<string, number>> {
  const { rows } = await sql<{ state: string; n: number }>`
    select state, count(*)::int as n from pgboss.job
    where name = ${TASK_QUEUE} and data->>'taskId' = ${taskId} group by state`.execute(h.db.db);
  return Object.fromEntries(rows.map((r) => [r.state, r.n]));
}

const waiting = (jobs: Record<string, number>) => (jobs.created ?? 0) + (jobs.retry ?? 0);

test("an outage does not multiply a task's jobs: the sweep queues one only when none waits", async () => {
  const { ts } = await h.mention("where is order 1042?");
  const task = await h.until("the first try to fail and wait to retry", async () => {
    const row = await taskWithStatus(h.db.db, ts, "active");
    return row && !row.lease_owner && (await jobsOf(row.id)).retry === 1 ? row : undefined;
  });
  // Every worker is down: the retry waits, and nothing takes the task meanwhile.
  await h.restart({ workers: false });
  assert.deepEqual(await jobsOf(task.id), { retry: 1 });

  // Three sweeps, as three replicas, or one replica over 45 s.
  for (let i = 0; i < 3; i++) await runMaintenance(h.baton.deps);
  assert.equal(waiting(await jobsOf(task.id)), 1, "still one job waits: the retry");

  // A task whose job is gone (a worker that died took it with it) gets one at the first sweep.
  const [retry] = (
    await sql<{ id: string }>`
      select id from pgboss.job where name = ${TASK_QUEUE} and data->>'taskId' = ${task.id}
        and state = 'retry'`.execute(h.db.db)
  ).rows;
  assert.ok(retry);
  await h.baton.deps.queue.done(h.db.db, retry.id);
  assert.equal(waiting(await jobsOf(task.id)), 0);
  // Two replicas' sweeps at once: one looks and queues under the task's lock.
  await Promise.all([runMaintenance(h.baton.deps), runMaintenance(h.baton.deps)]);
  assert.equal(waiting(await jobsOf(task.id)), 1, "queued at the first sweep");
  await runMaintenance(h.baton.deps);
  assert.equal(waiting(await jobsOf(task.id)), 1, "and not again");

  // The model is back and workers run: the one job answers.
  down = false;
  const asked = h.model.requests.length;
  await h.restart({ workers: true });
  await h.until("the answer", () => taskWithStatus(h.db.db, ts, "done"));
  assert.equal(h.model.requests.length - asked, 1, "one model call once it is back");
});

test("an accepted message queues its task's job, once, whatever the sweep does", async () => {
  await h.restart({ workers: false });
  const { ts } = await h.mention("where is order 1077?");
  const task = await h.until("the task", () => taskWithStatus(h.db.db, ts, "active"));
  assert.deepEqual(await jobsOf(task.id), { created: 1 });
  await runMaintenance(h.baton.deps);
  assert.deepEqual(await jobsOf(task.id), { created: 1 });
});
