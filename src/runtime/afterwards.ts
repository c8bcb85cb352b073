import type { Logger } from "../log.ts";

/**
 * What follows a person's click, form or command once its decision has committed: the card
 * updates and the words to the person. Slack shows an interaction as failed when its answer takes
 * over 3 s, and the answer waits for the listener (see `processBeforeResponse` in app.ts): it waits
 * for the decision alone. What fails here is logged, never told as "nothing was done": the decision
 * stands, and a card update Slack did not take stays in the outbox for the sweep.
 */
export interface Afterwards {
  run(what: string, work: () => Promise<unknown>): void;
  /** Waits for what is under way (at shutdown, before the database closes). */
  drain(): Promise<void>;
}

export function afterwards(log: Logger): Afterwards {
  const pending = new Set<Promise<void>>();
  return {
    run(what, work) {
      const done: Promise<void> = Promise.resolve()
        .then(work)
        .then(
          () => undefined,
          (error: unknown) => log.warn({ err: error }, `could not ${what}`),
        )
        .finally(() => pending.delete(done));
      pending.add(done);
    },
    async drain() {
      await Promise.all(pending);
    },
  };
}
