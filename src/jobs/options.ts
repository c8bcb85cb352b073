import type { ConstructorOptions, PgBoss } from "pg-boss";

export const TASK_QUEUE = "task.run";
export const TASK_DEAD_LETTERS = "task.run.dead";
export const CATCH_UP_QUEUE = "slack.catch-up";
export const CATCH_UP_DEAD_LETTERS = "slack.catch-up.dead";

/** pg-boss's schema, named here because WAITING_JOBS reads its table. */
export const PGBOSS_SCHEMA = "pgboss";

/** pg-boss in Baton's own database, on a pool of its own. */
export function bossOptions(url: string): ConstructorOptions {
  return { connectionString: url, schema: PGBOSS_SCHEMA, useListenNotify: true, max: 4 };
}

/** Retries 2 s, 4 s, 8 s … apart (at most 5 min): some ten minutes of a Slack outage. */
const CATCH_UP_RETRIES = {
  retryLimit: 8,
  retryDelay: 2,
  retryBackoff: true,
  retryDelayMax: 300,
} as const;

/** Each queue's retries, expiry and dead letters; `retries` is BATON_JOB_RETRIES. */
export async function createQueues(boss: PgBoss, retries: number): Promise<void> {
  await boss.createQueue(TASK_DEAD_LETTERS, { retryLimit: 3, retryBackoff: true });
  const taskRetries = {
    retryLimit: retries,
    retryDelay: 1,
    retryBackoff: true,
    retryDelayMax: 60,
  } as const;
  await boss.createQueue(TASK_QUEUE, {
    notify: true,
    ...taskRetries,
    expireInSeconds: 900,
    deadLetter: TASK_DEAD_LETTERS,
  });
  // The queue outlives the process: a changed BATON_JOB_RETRIES applies to the jobs sent from now on.
  await boss.updateQueue(TASK_QUEUE, taskRetries);
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
}

/** With its metadata: the job's own retry limit, kept from before a change of BATON_JOB_RETRIES. */
export const taskWork = (concurrency: number) =>
  ({
    localConcurrency: concurrency,
    pollingIntervalSeconds: 0.5,
    notifyPollingIntervalSeconds: 5,
    includeMetadata: true,
  }) as const;

/** Dead letters and catch-ups. With metadata: a dead letter's source output and time, a try's count. */
export const BACKGROUND_WORK = { pollingIntervalSeconds: 2, includeMetadata: true } as const;
