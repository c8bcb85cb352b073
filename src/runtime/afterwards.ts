import { within } from "../core/duration.ts";
import type { Logger } from "../log.ts";

/**
 * What follows a person's click, form or command once its decision has committed: the card
 * updates and the words to the person. Slack shows an interaction as failed when its answer takes
 * over 3 s, and the answer waits for the listener (see `processBeforeResponse` in app.ts): it waits
 * for the decision alone. What fails here is logged, never told as "nothing was done": the decision
 * stands, and a card update Slack did not take stays in the outbox for the sweep.
 */
export interface Afterwards {
  /**
   * `stopping` aborts when the process stops: a wait in `work` (a 429's Retry-After, tens of
   * seconds) that takes it ends then, and the work is dropped rather than hold the shutdown.
   */
  run(what: string, work: (stopping: AbortSignal) => Promise<unknown>): void;
  /** Waits for what is under way. */
  drain(): Promise<void>;
  /**
   * At shutdown, before the database closes: ends the waits of what is under way, and drains,
   * `waitMs` at most (a Slack call in flight may take SLACK_TIMEOUT_SECONDS).
   */
  stop(waitMs?: number): Promise<void>;
}

export function afterwards(log: Logger): Afterwards {
  const pending = new Set<Promise<void>>();
  const stopping = new AbortController();
  const drain = async () => {
    await Promise.all(pending);
  };
  return {
    run(what, work) {
      const done: Promise<void> = Promise.resolve(stopping.signal)
        .then(work)
        .then(
          () => undefined,
          (error: unknown) => {
            if (stopping.signal.aborted && isAbort(error))
              log.info(`dropped, the process is stopping: ${what}`);
            else log.warn({ err: error }, `could not ${what}`);
          },
        )
        .finally(() => pending.delete(done));
      pending.add(done);
    },
    drain,
    async stop(waitMs) {
      stopping.abort();
      await (waitMs === undefined ? drain() : within(drain(), waitMs));
    },
  };
}

/** How node:timers/promises (and fetch) end a wait whose signal aborted. */
const isAbort = (error: unknown) => error instanceof Error && error.name === "AbortError";
