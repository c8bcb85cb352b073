import { setTimeout as sleep } from "node:timers/promises";
import { RetryAfterError } from "../errors.ts";

/** A 429 without a Retry-After still waits a second: the next try must not ask again at once. */
export const rateLimitWaitMs = (error: RetryAfterError) => Math.max(error.retryAfterMs, 1_000);

/** 429s waited out in place before the failure goes to the caller, as the Slack client did. */
const RATE_LIMIT_WAITS = 3;

/**
 * Runs `send`, and again after each 429's Retry-After, RATE_LIMIT_WAITS times at most. Only for
 * work whose wait holds nothing back: no row lock, and no answer Slack is waiting for. A wait
 * ends at once when `stopping` aborts: with an AbortError for work dropped at a stop (`"drop"`),
 * or with the 429, as after the last wait, for work its caller keeps (`"leave"`: an outbox row,
 * left there for whoever delivers after the wait).
 */
export async function waitingOutRateLimits<T>(
  send: () => Promise<T>,
  stopping?: AbortSignal,
  atStop: "drop" | "leave" = "drop",
): Promise<T> {
  for (let waits = 0; ; waits++) {
    try {
      return await send();
    } catch (error) {
      if (!(error instanceof RetryAfterError) || waits >= RATE_LIMIT_WAITS) throw error;
      try {
        await sleep(rateLimitWaitMs(error), undefined, stopping && { signal: stopping });
      } catch (aborted) {
        throw atStop === "leave" && stopping?.aborted ? error : aborted;
      }
    }
  }
}

/** Sleeps `ms`, or less if `stopping` aborts (before or during the wait): false then. */
export async function sleepUnlessStopping(ms: number, stopping?: AbortSignal): Promise<boolean> {
  try {
    await sleep(ms, undefined, stopping && { signal: stopping });
    return true;
  } catch (error) {
    if (stopping?.aborted) return false;
    throw error;
  }
}
