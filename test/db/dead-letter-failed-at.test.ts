import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { sql } from "kysely";
import { type JobQueue, startJobQueue } from "../../src/jobs/queue.ts";
import { createLogger } from "../../src/log.ts";
import { createMetrics } from "../../src/metrics.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

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
  await queue.stop();
  await t.drop();
});

// A dead letter halts its task only if the task has not moved since the job's last try failed:
// the letter must say when that was, by the database's clock, which stamps the task's activity.
test("a dead letter says when its job's last try failed", async () => {
  const tries: Date[] = [];
  await queue.workTasks(1, async () => {
    const { rows } = await sql<{ now: Date }>`select clock_timestamp() as now`.execute(t.db);
    tries.push(rows[0]?.now ?? new Date(0));
    throw new Error("the model server is down");
  });
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
  assert.ok(read.failedAt instanceof Date, `failedAt: ${read.failedAt}`);
  const last = tries.at(-1) ?? new Date(0);
  assert.ok(read.failedAt >= last, `failed at ${read.failedAt.toISOString()}, after the last try`);
  const { rows } = await sql<{ completed_on: Date }>`
    select completed_on from pgboss.job where id = ${jobId}`.execute(t.db);
  assert.equal(read.failedAt.getTime(), rows[0]?.completed_on.getTime(), "when the job failed");
});
