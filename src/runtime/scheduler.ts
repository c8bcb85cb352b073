import cron, { type ScheduledTask } from "node-cron";
import { within } from "../core/duration.ts";
import { ConfigError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { sleepUnlessStopping } from "./retry-after.ts";

export interface SchedulerOptions {
  /** Cron expression: 5 fields, or 6 with seconds first. */
  schedule: string;
  /** IANA time zone the expression is read in, e.g. "Europe/Paris". */
  timezone: string;
  /** Idempotent: every replica calls it for the same firing, and it claims the firing itself. */
  run: (fireAt: Date) => Promise<void>;
  log: Logger;
  name?: string;
  /** Read at start, to fire today's firing late if none ran it (default: the system clock). */
  now?: () => Date;
  /** Waits before running a failed firing again, one per retry (default: 1, 5 and 15 minutes). */
  retryDelaysMs?: readonly number[];
}

export interface Scheduler {
  /** Fires no more, and waits for a firing under way: until it ends, or at most `waitMs`. */
  stop(waitMs?: number): Promise<void>;
}

// A busy event loop may fire late; past node-cron's 1 s default the firing would be skipped.
const LATE_TOLERANCE_MS = 60_000;
// A database failover at the digest's minute would otherwise lose the day's digest.
const RETRY_DELAYS_MS = [60_000, 300_000, 900_000];

/**
 * Only triggers: all the work, and the once-only guarantee, live in `run`. The key handed to `run`
 * is the scheduled slot, not the clock, so replicas whose clocks differ still agree on it.
 */
export function startScheduler(options: SchedulerOptions): Scheduler {
  if (!cron.validate(options.schedule)) {
    throw new ConfigError(
      `digest.schedule "${options.schedule}" is not a cron expression: write five fields like "0 9 * * 1-5"`,
    );
  }
  if (!isTimeZone(options.timezone)) {
    throw new ConfigError(
      `digest.timezone "${options.timezone}" is not a time zone: use an IANA name like "Europe/Paris"`,
    );
  }
  const withSeconds = options.schedule.trim().split(/\s+/).length === 6;
  const name = options.name ?? "digest";
  const log = options.log.child({ scheduler: name });
  const retryDelays = options.retryDelaysMs ?? RETRY_DELAYS_MS;
  const stopping = new AbortController();
  // The claim in `run` makes a retry of a firing another replica ran send nothing.
  const fire = async (fireAt: Date) => {
    for (let attempt = 0; ; attempt++) {
      try {
        await options.run(fireAt);
        return;
      } catch (error) {
        const retryInMs = retryDelays[attempt];
        log.error({ err: error, fireAt: fireAt.toISOString(), retryInMs }, "scheduled run failed");
        if (retryInMs === undefined) return;
        if (!(await sleepUnlessStopping(retryInMs, stopping.signal))) return;
      }
    }
  };
  const firing = new Set<Promise<void>>();
  const fireTracked = (fireAt: Date) => {
    const work = fire(fireAt).finally(() => firing.delete(work));
    firing.add(work);
    return work;
  };
  const task = cron.schedule(
    options.schedule,
    (context) => fireTracked(slotKey(context.date, withSeconds)),
    {
      timezone: options.timezone,
      name,
      noOverlap: true,
      missedExecutionTolerance: LATE_TOLERANCE_MS,
    },
  );
  // node-cron fires nothing it missed while no process ran: a start does, under the slot's own
  // key, so a firing another replica ran is claimed already and sends nothing.
  const now = options.now?.() ?? new Date();
  const missed = lateSlot(task, options.timezone, withSeconds, now);
  if (missed) void fireTracked(missed);
  log.info(
    { schedule: options.schedule, timezone: options.timezone, late: missed?.toISOString() },
    "scheduler started",
  );
  return {
    async stop(waitMs) {
      stopping.abort();
      await task.destroy();
      const under = Promise.all(firing);
      await (waitMs === undefined ? under : within(under, waitMs));
    },
  };
}

const HOUR_MS = 3_600_000;

/**
 * The firing a start should run late: today's last (in the schedule's time zone), if nearer than
 * the next. A past day's digest is not sent on another day, nor at 22:00 a 09:00 one that the next
 * repeats in eleven hours. Searched out from `now` a slot at a time, back and ahead, so the nearer
 * is met first, within 25 hours (a day when clocks go back): 3,000 matches at most for five fields.
 */
function lateSlot(
  task: Pick<ScheduledTask, "match">,
  timezone: string,
  withSeconds: boolean,
  now: Date,
): Date | undefined {
  const unit = withSeconds ? 1_000 : 60_000;
  const from = slotKey(now, withSeconds).getTime();
  const day = new Intl.DateTimeFormat("en-CA", { timeZone: timezone, dateStyle: "short" });
  for (let step = 0; step * unit <= 25 * HOUR_MS; step++) {
    const back = new Date(from - step * unit);
    if (task.match(back)) return day.format(back) === day.format(now) ? back : undefined;
    if (task.match(new Date(from + (step + 1) * unit))) return undefined;
  }
  return undefined;
}

/** The slot at the schedule's own resolution: the minute, or the second for 6-field expressions. */
export function slotKey(date: Date, withSeconds: boolean): Date {
  const unit = withSeconds ? 1_000 : 60_000;
  return new Date(Math.floor(date.getTime() / unit) * unit);
}

function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}
