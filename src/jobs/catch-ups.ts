import type { PgBoss } from "pg-boss";
import { z } from "zod";
import { ThreadReadPaused } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { CatchUpQueue, ThreadCatchUp } from "../runtime/deps.ts";
import { rateLimitWaitMs } from "../runtime/retry-after.ts";
import { deadLetterReason } from "./dead-letters.ts";
import { BACKGROUND_WORK, CATCH_UP_DEAD_LETTERS, CATCH_UP_QUEUE } from "./options.ts";

/**
 * Slack's 429s a catch-up waits out, each as a job of its own due after the Retry-After, before a
 * 429 counts as a failure. conversations.replies allows an app outside the Marketplace about one
 * call a minute, which the threads waiting at once take in turns.
 */
const CATCH_UP_WAITS = 60;

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

/** A mention's catch-up jobs share it: the stately queue keeps one queued, one to retry, one running. */
const catchUpKey = (thread: ThreadCatchUp) => `${thread.channel}:${thread.after}`;

/** A catch-up job in these states reads its thread yet. */
const STILL_READS: ReadonlySet<string> = new Set(["created", "retry", "active"]);

interface Context {
  log: Logger;
  metrics: Metrics;
}

async function sendCatchUp(boss: PgBoss, job: CatchUpJob, afterMs: number): Promise<void> {
  // Null when one waits for this mention already: it reads the same replies.
  await boss.send(CATCH_UP_QUEUE, job, {
    singletonKey: catchUpKey(job.thread),
    startAfter: Math.ceil(afterMs / 1000),
  });
}

/** The late mentions' queue, as the Slack listeners send to it. */
export function catchUpQueue(boss: PgBoss): CatchUpQueue {
  return { enqueue: (thread, afterMs) => sendCatchUp(boss, { thread, waits: 0 }, afterMs) };
}

/** Catch-up jobs; a 429 queues the rest of the read after its wait, CATCH_UP_WAITS times at most. */
export async function workCatchUps(
  boss: PgBoss,
  context: Context,
  handler: (thread: ThreadCatchUp) => Promise<void>,
): Promise<void> {
  await boss.work<unknown, unknown, typeof BACKGROUND_WORK>(
    CATCH_UP_QUEUE,
    BACKGROUND_WORK,
    async (jobs) => {
      for (const job of jobs) {
        const data = catchUpJob.parse(job.data);
        try {
          await handler(data.thread);
        } catch (error) {
          // Sent before this job completes: a crash in between runs the read twice, which
          // accepts nothing twice (each reply's message key).
          if (error instanceof ThreadReadPaused && data.waits < CATCH_UP_WAITS) {
            await sendCatchUp(
              boss,
              { thread: error.rest, waits: data.waits + 1 },
              rateLimitWaitMs(error),
            );
            continue;
          }
          context.metrics.jobFailures.inc({ queue: CATCH_UP_QUEUE });
          const retried = job.retryCount < job.retryLimit;
          context.log.warn(
            { err: error, thread: data.thread, jobId: job.id, retried },
            retried
              ? "catch-up job failed; it will be retried"
              : "catch-up job failed its last try",
          );
          throw error;
        }
      }
    },
  );
}

/** The dead letters of catch-up jobs out of retries, unless another job still reads the thread. */
export async function workCatchUpDeadLetters(
  boss: PgBoss,
  context: Context,
  onDeadLetter: (thread: ThreadCatchUp, reason: string) => Promise<void>,
): Promise<void> {
  await boss.work<unknown, unknown, typeof BACKGROUND_WORK>(
    CATCH_UP_DEAD_LETTERS,
    BACKGROUND_WORK,
    async (jobs) => {
      for (const job of jobs) {
        context.metrics.deadLetters.inc({ queue: CATCH_UP_QUEUE });
        const { thread } = catchUpJob.parse(job.data);
        // Two jobs for one mention (a redelivery's, beside one waiting to retry): the stately
        // queue keeps one job to retry per mention, so a try of the other that fails then is
        // dead-lettered at once, retries left or not. The one waiting still reads the thread,
        // and its own dead letter speaks if it comes to that.
        const others = await boss.findJobs(CATCH_UP_QUEUE, { key: catchUpKey(thread) });
        if (others.some((other) => other.id !== job.sourceId && STILL_READS.has(other.state))) {
          context.log.warn(
            { thread, jobId: job.sourceId },
            "catch-up job dead-lettered beside another job for its mention: left to that one",
          );
          continue;
        }
        await onDeadLetter(thread, deadLetterReason(job.sourceOutput));
      }
    },
  );
}
