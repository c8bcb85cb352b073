import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, test } from "node:test";
import { sql } from "kysely";
import { openDatabase } from "../../src/db/database.ts";
import { type FailedTry, type JobQueue, startJobQueue } from "../../src/jobs/queue.ts";
import { createLogger } from "../../src/log.ts";
import { createMetrics } from "../../src/metrics.ts";
import { recordFailedTry } from "../../src/runtime/failed-tries.ts";
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
  assert.ok(read.failedAt >= last, `failed at ${read.failedAt.toISOString()}, after the last try`);
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
