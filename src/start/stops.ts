import type { Logger } from "../log.ts";

/** One step of a stop, given what is left of the stop's deadline for the work it waits on. */
export type Stop = (waitMs: number) => Promise<void>;

export interface StopSequence {
  /** Aborted as the stop begins. */
  signal: AbortSignal;
  /** Run in reverse at the stop: what started last stops first. */
  add(stop: Stop): void;
  /** Runs every step; a step that fails is logged, and the next one runs. */
  run(): Promise<void>;
}

/**
 * A step that waits for work under way (Slack's envelopes, the runs, the queue's jobs) waits what
 * is left of one deadline: the waits share it, rather than each adding its own.
 */
export function stopSequence(log: Logger, waitMs: number): StopSequence {
  const stops: Stop[] = [];
  const stopping = new AbortController();
  const runAll = async () => {
    // First: the runs drained below must not hold the stop for Slack's Retry-After.
    stopping.abort();
    const deadline = performance.now() + waitMs;
    for (const stop of [...stops].reverse())
      await stop(Math.max(0, deadline - performance.now())).catch((error) =>
        log.warn({ err: error }, "shutdown step failed"),
      );
  };
  // A second stop (SIGINT after SIGTERM, say) joins the first rather than close things under it.
  let running: Promise<void> | undefined;
  return {
    signal: stopping.signal,
    add: (stop) => {
      stops.push(stop);
    },
    run: () => {
      running ??= runAll();
      return running;
    },
  };
}
