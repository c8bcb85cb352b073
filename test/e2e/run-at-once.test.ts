import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { sql } from "kysely";
import { type Harness, startHarness } from "../support/harness.ts";
import { type Script, scriptByAgent } from "../support/model-server.ts";
import { resetFlow1Data, whereIsMyOrderScript } from "../support/scripts.ts";
import { finishedTask } from "../support/scripts-humans.ts";

// Flow 1 twice; the second time, the model fails the run's first request, and the openai client's
// two retries of it, so the run itself fails.
const once = whereIsMyOrderScript();
const flow = scriptByAgent(
  Object.fromEntries(
    Object.entries(once).map(([agent, replies]) => [agent, [...replies, ...replies]]),
  ),
);
let failedAt = -1;
const script: Script = (request, context) => {
  if (failedAt >= 0 && context.callIndex >= failedAt && context.callIndex < failedAt + 3)
    return { status: 500, error: "the model is down for a moment" };
  return flow(request, context);
};

let h: Harness;
before(async () => {
  h = await startHarness({ script });
});
after(async () => {
  await h.close();
});

async function jobsOf(taskId: string) {
  const rows = await sql<{ state: string; retry_count: number; started: boolean }>`
    select state, retry_count, started_on is not null as started from pgboss.job
    where name = 'task.run' and data->>'taskId' = ${taskId}`.execute(h.db.db);
  return rows.rows;
}

test("a new task runs where it was accepted; its job, held back, is marked done by that run", async () => {
  const { ts } = await h.mention("where is order 1042?");
  const task = await finishedTaskOf(ts);
  // Ten turns, each asked of the model once: the job did not run the task a second time.
  assert.equal(h.model.requests.length, 10);
  assert.equal((await h.db.db.selectFrom("shipments").selectAll().execute()).length, 1);
  const jobs = await h.until("the job to complete", async () => {
    const rows = await jobsOf(task.id);
    return rows.length === 1 && rows[0]?.state === "completed" ? rows : undefined;
  });
  assert.equal(jobs[0]?.started, false, "done while still queued: no worker ran it");
  const lease = await h.db.db
    .selectFrom("tasks")
    .select(["lease_owner", "lease_until"])
    .where("id", "=", task.id)
    .executeTakeFirstOrThrow();
  assert.deepEqual(lease, { lease_owner: null, lease_until: null }, "the lease is given up");
});

test("a run started at once that fails brings its job forward, which retries it; every effect happens once", async () => {
  await resetFlow1Data(h.db.db);
  failedAt = h.model.requests.length;
  const { ts } = await h.mention("where is order 1042, again?");
  const task = await finishedTaskOf(ts);
  assert.equal(
    h.model.requests.length - failedAt,
    13,
    "the failed request 3 times, then ten turns",
  );
  assert.equal((await h.db.db.selectFrom("shipments").selectAll().execute()).length, 1);
  const jobs = await h.until("the job to complete", async () => {
    const rows = await jobsOf(task.id);
    return rows.some((j) => j.state === "completed") ? rows : undefined;
  });
  assert.deepEqual(
    jobs.map((j) => [j.state, j.retry_count, j.started]),
    [["completed", 0, true]],
    "the one job, run at once and not held until the lease would run out",
  );
});

function finishedTaskOf(ts: string) {
  return h.until("the task to finish", () => finishedTask(h.db.db, ts));
}
