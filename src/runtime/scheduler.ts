import cron from "node-cron";
import { ConfigError } from "../errors.ts";
import type { Logger } from "../log.ts";

export interface SchedulerOptions {
  /** Cron expression: 5 fields, or 6 with seconds first. */
  schedule: string;
  /** IANA time zone the expression is read in, e.g. "Europe/Paris". */
  timezone: string;
  /** Idempotent: every replica calls it for the same firing, and it claims the firing itself. */
  run: (fireAt: Date) => Promise<void>;
  log: Logger;
  name?: string;
}

export interface Scheduler {
  stop(): Promise<void>;
}

// A busy event loop may fire late; past node-cron's 1 s default the firing would be skipped.
const LATE_TOLERANCE_MS = 60_000;

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
  const task = cron.schedule(
    options.schedule,
    async (context) => {
      const fireAt = slotKey(context.date, withSeconds);
      try {
        await options.run(fireAt);
      } catch (error) {
        log.error({ err: error, fireAt: fireAt.toISOString() }, "scheduled run failed");
      }
    },
    {
      timezone: options.timezone,
      name,
      noOverlap: true,
      missedExecutionTolerance: LATE_TOLERANCE_MS,
    },
  );
  log.info({ schedule: options.schedule, timezone: options.timezone }, "scheduler started");
  return {
    async stop() {
      await task.destroy();
    },
  };
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
