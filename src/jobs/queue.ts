import { PgBoss } from "pg-boss";
import { z } from "zod";
import { type Executor, isConnectionLost, sqlExecutor, statement } from "../db/database.ts";
import { ThreadReadPaused } from "../errors.ts";
import { type Logger, maskedFirstLine } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { CatchUpQueue, TaskQueue, ThreadCatchUp } from "../runtime/deps.ts";
import { rateLimitWaitMs } from "../runtime/retry-after.ts";

export const TASK_QUEUE = "task.run";
export const TASK_DEAD_LETTERS = "task.run.dead";
export const MAINTENANCE_QUEUE = "baton.maintenance";
export const CATCH_UP_QUEUE = "slack.catch-up";
export const CATCH_UP_DEAD_LETTERS = "slack.catch-up.dead";

/**
 * Slack's 429s a catch-up waits out, each as a job of its own due after the Retry-After, before a
 * 429 counts as a failure. conversations.replies allows an app outside the Marketplace about one
 * call a minute, which the threads waiting at once take in turns.
 */
const CATCH_UP_WAITS = 60;

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

interface TaskJob {
  taskId: string;
}

const catchUpJob = z.object({
  thread: z.object({
    channel: z.string(),
    threadTs: z.string(),
    after: z.string(),
    readTo: z.string().optional(),
  }),
  /** 429s waited out before this job, by the jobs before it. */
  waits: z.number().int().nonnegative(),
});
type CatchUpJob = z.infer<typeof catchUpJob>;

/** pg-boss's schema, named here because WAITING_JOBS reads its table. */
const PGBOSS_SCHEMA = "pgboss";

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

/** A mention's catch-up jobs share it: the stately queue keeps one queued, one to retry, one running. */
const catchUpKey = (thread: ThreadCatchUp) => `${thread.channel}:${thread.after}`;

/** A catch-up job in these states reads its thread yet. */
const STILL_READS: ReadonlySet<string> = new Set(["created", "retry", "active"]);

/** Retries 2 s, 4 s, 8 s … apart (at most 5 min): some ten minutes of a Slack outage. */
const CATCH_UP_RETRIES = {
  retryLimit: 8,
  retryDelay: 2,
  retryBackoff: true,
  retryDelayMax: 300,
} as const;

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
  const boss = new PgBoss({
    connectionString: options.url,
    schema: PGBOSS_SCHEMA,
    useListenNotify: true,
    max: 4,
  });
  boss.on("error", (error) => {
    // A restart or failover of Postgres: pg-boss reconnects and polls again by itself.
    if (isConnectionLost(error))
      options.log.warn({ err: error }, "job queue lost the database; it retries on its own");
    else options.log.error({ err: error }, "job queue error");
  });
  await boss.start();
  await boss.createQueue(TASK_DEAD_LETTERS, { retryLimit: 3, retryBackoff: true });
  const retries = {
    retryLimit: options.retries,
    retryDelay: 1,
    retryBackoff: true,
    retryDelayMax: 60,
  } as const;
  await boss.createQueue(TASK_QUEUE, {
    notify: true,
    ...retries,
    expireInSeconds: 900,
    deadLetter: TASK_DEAD_LETTERS,
  });
  // The queue outlives the process: a changed BATON_JOB_RETRIES applies to the jobs sent from now on.
  await boss.updateQueue(TASK_QUEUE, retries);
  await boss.createQueue(CATCH_UP_DEAD_LETTERS, { retryLimit: 3, retryBackoff: true });
  // Stately: one job per mention waits, whatever Slack redelivers, and another may wait behind
  // the one running (its own follow-up after a 429).
  await boss.createQueue(CATCH_UP_QUEUE, {
    policy: "stately",
    ...CATCH_UP_RETRIES,
    // A read of five pages at most: a job still active after this died with its worker.
    expireInSeconds: 300,
    deadLetter: CATCH_UP_DEAD_LETTERS,
  });
  const sendCatchUp = async (job: CatchUpJob, afterMs: number) => {
    // Null when one waits for this mention already: it reads the same replies.
    await boss.send(CATCH_UP_QUEUE, job, {
      singletonKey: catchUpKey(job.thread),
      startAfter: Math.ceil(afterMs / 1000),
    });
  };
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
    catchUps: {
      enqueue: (thread, afterMs) => sendCatchUp({ thread, waits: 0 }, afterMs),
    },
    tasks: {
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
    },
    async workTasks(concurrency, handler, onFailure) {
      // With its metadata: the job's own retry limit, kept from before a change of BATON_JOB_RETRIES.
      const work = {
        localConcurrency: concurrency,
        pollingIntervalSeconds: 0.5,
        notifyPollingIntervalSeconds: 5,
        includeMetadata: true,
      } as const;
      await boss.work<TaskJob, unknown, typeof work>(TASK_QUEUE, work, async (jobs) => {
        for (const job of jobs) {
          try {
            await handler(job.data.taskId);
          } catch (error) {
            options.metrics.jobFailures.inc({ queue: TASK_QUEUE });
            const retried = job.retryCount < job.retryLimit;
            options.log.warn(
              { err: error, taskId: job.data.taskId, jobId: job.id, retried },
              retried ? "task job failed; it will be retried" : "task job failed its last try",
            );
            await onFailure({ taskId: job.data.taskId, error, retried });
            throw error;
          }
        }
      });
    },
    async workDeadLetters(handler) {
      const work = { pollingIntervalSeconds: 2, includeMetadata: true } as const;
      await boss.work<TaskJob, unknown, typeof work>(TASK_DEAD_LETTERS, work, async (jobs) => {
        for (const job of jobs) {
          options.metrics.deadLetters.inc({ queue: TASK_QUEUE });
          // pg-boss writes the dead letter in the statement that fails the job's last try: its
          // creation is that failure's time, by the clock that stamps the task's activity too.
          await handler(job.data.taskId, deadLetterReason(job.sourceOutput), job.createdOn);
        }
      });
    },
    async workCatchUps(handler, onDeadLetter) {
      const work = { pollingIntervalSeconds: 2, includeMetadata: true } as const;
      await boss.work<unknown, unknown, typeof work>(CATCH_UP_QUEUE, work, async (jobs) => {
        for (const job of jobs) {
          const data = catchUpJob.parse(job.data);
          try {
            await handler(data.thread);
          } catch (error) {
            // Sent before this job completes: a crash in between runs the read twice, which
            // accepts nothing twice (each reply's message key).
            if (error instanceof ThreadReadPaused && data.waits < CATCH_UP_WAITS) {
              await sendCatchUp(
                { thread: error.rest, waits: data.waits + 1 },
                rateLimitWaitMs(error),
              );
              continue;
            }
            options.metrics.jobFailures.inc({ queue: CATCH_UP_QUEUE });
            const retried = job.retryCount < job.retryLimit;
            options.log.warn(
              { err: error, thread: data.thread, jobId: job.id, retried },
              retried
                ? "catch-up job failed; it will be retried"
                : "catch-up job failed its last try",
            );
            throw error;
          }
        }
      });
      const letters = { pollingIntervalSeconds: 2, includeMetadata: true } as const;
      await boss.work<unknown, unknown, typeof letters>(
        CATCH_UP_DEAD_LETTERS,
        letters,
        async (jobs) => {
          for (const job of jobs) {
            options.metrics.deadLetters.inc({ queue: CATCH_UP_QUEUE });
            const { thread } = catchUpJob.parse(job.data);
            // Two jobs for one mention (a redelivery's, beside one waiting to retry): the stately
            // queue keeps one job to retry per mention, so a try of the other that fails then is
            // dead-lettered at once, retries left or not. The one waiting still reads the thread,
            // and its own dead letter speaks if it comes to that.
            const others = await boss.findJobs(CATCH_UP_QUEUE, { key: catchUpKey(thread) });
            if (others.some((other) => other.id !== job.sourceId && STILL_READS.has(other.state))) {
              options.log.warn(
                { thread, jobId: job.sourceId },
                "catch-up job dead-lettered beside another job for its mention: left to that one",
              );
              continue;
            }
            await onDeadLetter(thread, deadLetterReason(job.sourceOutput));
          }
        },
      );
    },
    async finishJobs(waitMs) {
      await boss.stop({ graceful: true, timeout: waitMs, close: false });
    },
    async stop(waitMs) {
      await boss.stop({ graceful: true, timeout: waitMs });
    },
  };
}

/** The thread is told why: the last attempt's error, which pg-boss keeps as the dead letter's source output. */
function deadLetterReason(output: object | null): string {
  const message = (output as { message?: unknown } | null)?.message;
  // The thread is read by people: a secret an error carried (a token, a password in a URL) is masked.
  const last = typeof message === "string" ? maskedFirstLine(message, 300) : "";
  return last
    ? `it kept failing after several retries; the last error was: ${last}`
    : "it kept failing after several retries";
}
