import type { PgBoss } from "pg-boss";
import { type Executor, sqlExecutor, statement } from "../db/database.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { TaskQueue } from "../runtime/deps.ts";
import { deadLetterReason } from "./dead-letters.ts";
import {
  BACKGROUND_WORK,
  PGBOSS_SCHEMA,
  TASK_DEAD_LETTERS,
  TASK_QUEUE,
  taskWork,
} from "./options.ts";
import type { FailedTry } from "./queue.ts";

interface TaskJob {
  taskId: string;
}

/**
 * A task's jobs that wait (queued, or due to retry after a failed try), each with whether it is held
 * back: queued, not due yet by the database's clock, as a task run where it was accepted leaves its
 * job. Read from pg-boss's table, in one scan of its index of waiting jobs by key: the sweep reads it
 * for every orphaned task, every 15 s, on every replica.
 */
export const WAITING_JOBS_SQL = `
select id, state = 'created' and start_after > now() as held
from ${PGBOSS_SCHEMA}.job
where name = '${TASK_QUEUE}' and singleton_key = $1 and state < 'active'`;
const WAITING_JOBS = statement<[taskId: string], { id: string; held: boolean }>(WAITING_JOBS_SQL);

/** The task runs' queue, as the use cases send to it. */
export function taskQueue(boss: PgBoss): TaskQueue {
  const enqueue: TaskQueue["enqueue"] = async (executor, taskId, opts = {}) => {
    const id = await boss.send(TASK_QUEUE, { taskId } satisfies TaskJob, {
      db: sqlExecutor(executor),
      // A label only, in a standard queue (no two jobs are kept apart by it): the sweep finds a
      // task's waiting job by it, through pg-boss's index of queued jobs by key.
      singletonKey: taskId,
      ...(opts.startAfterSeconds !== undefined && { startAfter: opts.startAfterSeconds }),
    });
    if (!id) throw new Error(`the job queue did not take task ${taskId}'s job`);
    return id;
  };
  return {
    enqueue,
    async enqueueUnlessWaiting(executor: Executor, taskId: string) {
      // Queued or due to retry; not active: a worker that died leaves its job active until it
      // expires (15 min), and its task must be taken over when its lease runs out.
      const waiting = await WAITING_JOBS.rows(executor, taskId);
      if (waiting.length === 0) return enqueue(executor, taskId);
      // One due now runs soon; one waiting out a failed try's backoff keeps it, and so does a job
      // held back beside it. Held back alone, for a run that never began: it runs now.
      if (waiting.some((job) => !job.held)) return undefined;
      const db = sqlExecutor(executor);
      for (const job of waiting)
        await boss.update(TASK_QUEUE, undefined, { id: job.id, startAfter: 0, db });
      return undefined;
    },
    async done(executor: Executor, jobId) {
      // Completed while still queued: it never reaches a worker. Through Baton's pool, where it
      // is a prepared statement: pg-boss's own pool plans it at every call (0.35 ms).
      await boss.complete(TASK_QUEUE, jobId, undefined, {
        includeQueued: true,
        db: sqlExecutor(executor),
      });
    },
    async runNow(jobId) {
      await boss.update(TASK_QUEUE, undefined, { id: jobId, startAfter: 0 });
    },
  };
}

/** Task jobs, `concurrency` at a time; a failed try is counted, logged and told to `onFailure`. */
export async function workTasks(
  boss: PgBoss,
  context: { log: Logger; metrics: Metrics },
  concurrency: number,
  handler: (taskId: string) => Promise<void>,
  onFailure: (failed: FailedTry) => Promise<void>,
): Promise<void> {
  const work = taskWork(concurrency);
  await boss.work<TaskJob, unknown, typeof work>(TASK_QUEUE, work, async (jobs) => {
    for (const job of jobs) {
      try {
        await handler(job.data.taskId);
      } catch (error) {
        context.metrics.jobFailures.inc({ queue: TASK_QUEUE });
        const retried = job.retryCount < job.retryLimit;
        context.log.warn(
          { err: error, taskId: job.data.taskId, jobId: job.id, retried },
          retried ? "task job failed; it will be retried" : "task job failed its last try",
        );
        await onFailure({ taskId: job.data.taskId, error, retried });
        throw error;
      }
    }
  });
}

/** The dead letters of task jobs out of retries. */
export async function workTaskDeadLetters(
  boss: PgBoss,
  metrics: Metrics,
  handler: (taskId: string, error: string, failedAt: Date) => Promise<void>,
): Promise<void> {
  await boss.work<TaskJob, unknown, typeof BACKGROUND_WORK>(
    TASK_DEAD_LETTERS,
    BACKGROUND_WORK,
    async (jobs) => {
      for (const job of jobs) {
        metrics.deadLetters.inc({ queue: TASK_QUEUE });
        // pg-boss writes the dead letter in the statement that fails the job's last try: its
        // creation is that failure's time, by the clock that stamps the task's activity too.
        await handler(job.data.taskId, deadLetterReason(job.sourceOutput), job.createdOn);
      }
    },
  );
}
