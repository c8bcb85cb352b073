import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createLogger } from "../src/log.ts";
import { startScheduler } from "../src/runtime/scheduler.ts";

const log = createLogger({ level: "silent" });

describe("a scheduled run that fails", () => {
  // The database was unreachable for a moment at 09:00 (a failover): the day's digest was lost,
  // as nothing ran it again until the next day.
  test("is run again for the same firing", { timeout: 5_000 }, async (t) => {
    const fired: string[] = [];
    let ranAgain: () => void = () => {};
    const again = new Promise<void>((resolve) => {
      ranAgain = resolve;
    });
    const scheduler = startScheduler({
      schedule: "0 9 * * 1-5",
      timezone: "Europe/Paris",
      log,
      // Monday 2025-01-06, 09:00:20 in Paris: today's firing runs at the start.
      now: () => new Date("2025-01-06T08:00:20Z"),
      retryDelaysMs: [0],
      run: async (fireAt) => {
        fired.push(fireAt.toISOString());
        if (fired.length === 1) throw new Error("connection terminated unexpectedly");
        ranAgain();
      },
    });
    t.after(() => scheduler.stop());
    await again;
    await scheduler.stop();
    assert.deepEqual(fired, ["2025-01-06T08:00:00.000Z", "2025-01-06T08:00:00.000Z"]);
  });

  test("is tried as many times as its retries allow", { timeout: 5_000 }, async (t) => {
    let runs = 0;
    let ranThrice: () => void = () => {};
    const thrice = new Promise<void>((resolve) => {
      ranThrice = resolve;
    });
    const scheduler = startScheduler({
      schedule: "0 9 * * 1-5",
      timezone: "Europe/Paris",
      log,
      now: () => new Date("2025-01-06T08:00:20Z"),
      retryDelaysMs: [0, 0],
      run: async () => {
        if (++runs === 3) ranThrice();
        throw new Error("still down");
      },
    });
    t.after(() => scheduler.stop());
    await thrice;
    await scheduler.stop();
    assert.equal(runs, 3);
  });
});

describe("a stop", () => {
  /** A scheduler whose start fires today's 09:00 late, and whose run ends when told to. */
  function firingUnderWay(t: { after: (fn: () => Promise<void>) => void }) {
    const running = Promise.withResolvers<void>();
    const finished = Promise.withResolvers<void>();
    let ended = false;
    const scheduler = startScheduler({
      schedule: "0 9 * * 1-5",
      timezone: "Europe/Paris",
      log,
      now: () => new Date("2025-01-06T08:00:20Z"),
      run: async () => {
        running.resolve();
        await finished.promise;
        ended = true;
      },
    });
    t.after(async () => {
      finished.resolve();
      await scheduler.stop();
    });
    return {
      scheduler,
      running: running.promise,
      finish: finished.resolve,
      ended: () => ended,
    };
  }

  // The digest's DMs go out under way: its outbox rows are marked as Slack takes them.
  test("waits for the firing under way to end", { timeout: 5_000 }, async (t) => {
    const { scheduler, running, finish, ended } = firingUnderWay(t);
    await running;
    const stopped = scheduler.stop(4_000);
    finish();
    await stopped;
    assert.equal(ended(), true);
  });

  // Slack or the database hangs: the stop keeps to its deadline, and the firing is left.
  test("waits no longer than it is given", { timeout: 5_000 }, async (t) => {
    const { scheduler, running, ended } = firingUnderWay(t);
    await running;
    await scheduler.stop(50);
    assert.equal(ended(), false);
  });
});
