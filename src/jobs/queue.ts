import { PgBoss } from "pg-boss";
import { isConnectionLost } from "../db/database.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { CatchUpQueue, TaskQueue, ThreadCatchUp } from "../runtime/deps.ts";
import { catchUpQueue, workCatchUpDeadLetters, workCatchUps } from "./catch-ups.ts";
import { bossOptions, createQueues } from "./options.ts";
import { taskQueue, workTaskDeadLetters, workTasks } from "./tasks.ts";

export {
  CATCH_UP_DEAD_LETTERS,
  CATCH_UP_QUEUE,
  TASK_QUEUE,
} from "./options.ts";
export { WAITING_JOBS_SQL } from "./tasks.ts";

export interface JobQueue {
  tasks: TaskQueue;
  catchUps: CatchUpQueue;
  /** `onFailure` hears of each failed try, and whether it is retried, before the queue; it never rejects. */
  workTasks(
    concurrency: number,
    handler: (taskId: string) => Promise<void>,
    onFailure: (failed: FailedTry) => Promise<void>,
  ): Promise<void>;
  /** `failedAt`: when the job's last try failed, by the database's clock. */
  workDeadLetters(
    handler: (taskId: string, error: string, failedAt: Date) => Promise<void>,
  ): Promise<void>;
  /**
   * Catch-up jobs, and their dead letters. A RetryAfterError from `handler` is no failure: the read
   * is queued again after the wait, CATCH_UP_WAITS times at most. A dead letter goes to
   * `onDeadLetter` with why, unless another job for the same mention still reads its thread.
   */
  workCatchUps(
    handler: (thread: ThreadCatchUp) => Promise<void>,
    onDeadLetter: (thread: ThreadCatchUp, reason: string) => Promise<void>,
  ): Promise<void>;
  /**
   * At shutdown: takes no more jobs and waits for those under way, `waitMs` at most (1 s at least,
   * pg-boss's floor). pg-boss then fails the rest, to be retried: each run resumes from its last
   * commit. The queue's pool stays open for the runs started where a message was accepted, which
   * still mark or bring forward their jobs.
   */
  finishJobs(waitMs: number): Promise<void>;
  /**
   * Closes the queue. Without finishJobs first (no workers here, or a start that failed), it first
   * waits as finishJobs does, and for a command of pg-boss's own migrations, `waitMs` at most.
   */
  stop(waitMs: number): Promise<void>;
}

export interface FailedTry {
  taskId: string;
  error: unknown;
  /** False on the job's last try: its dead letter follows. */
  retried: boolean;
}

/**
 * pg-boss in Baton's own database: jobs are enqueued inside the transaction that made them
 * necessary, retried with backoff, and dead-lettered after the last attempt.
 */
export async function startJobQueue(options: {
  url: string;
  log: Logger;
  metrics: Metrics;
  /** Times a failed job is tried again, with backoff (1 s, 2 s, 4 s, ... up to 60 s), before its dead letter. */
  retries: number;
}): Promise<JobQueue> {
  const boss = new PgBoss(bossOptions(options.url));
  boss.on("error", (error) => {
    // A restart or failover of Postgres: pg-boss reconnects and polls again by itself.
    if (isConnectionLost(error))
      options.log.warn({ err: error }, "job queue lost the database; it retries on its own");
    else options.log.error({ err: error }, "job queue error");
  });
  await boss.start();
  await createQueues(boss, options.retries);
  return {
    catchUps: catchUpQueue(boss),
    tasks: taskQueue(boss),
    workTasks: (concurrency, handler, onFailure) =>
      workTasks(boss, options, concurrency, handler, onFailure),
    workDeadLetters: (handler) => workTaskDeadLetters(boss, options.metrics, handler),
    async workCatchUps(handler, onDeadLetter) {
      await workCatchUps(boss, options, handler);
      await workCatchUpDeadLetters(boss, options, onDeadLetter);
    },
    async finishJobs(waitMs) {
      await boss.stop({ graceful: true, timeout: waitMs, close: false });
    },
    async stop(waitMs) {
      await boss.stop({ graceful: true, timeout: waitMs });
    },
  };
}
