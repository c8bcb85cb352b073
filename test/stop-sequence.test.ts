import assert from "node:assert/strict";
import { test } from "node:test";
import { createLogger } from "../src/log.ts";
import { stopSequence } from "../src/start/stops.ts";

// main.ts stops on SIGTERM and on SIGINT: a second signal during a stop must not run the steps
// again, in start order (the database closed under the runs still draining).
test("a second stop joins the first: each step runs once, last started first", async () => {
  const stops = stopSequence(createLogger({ level: "silent" }), 1_000);
  const ran: string[] = [];
  let release = () => {};
  const slow = new Promise<void>((resolve) => {
    release = resolve;
  });
  stops.add(async () => {
    ran.push("database");
  });
  stops.add(async () => {
    ran.push("runs");
    await slow;
  });
  const first = stops.run();
  const second = stops.run();
  release();
  await Promise.all([first, second]);
  assert.equal(first, second);
  assert.deepEqual(ran, ["runs", "database"]);
  assert.equal(stops.signal.aborted, true);
});

test("each step is given what is left of the one deadline", async () => {
  const stops = stopSequence(createLogger({ level: "silent" }), 60_000);
  const given: number[] = [];
  stops.add(async (waitMs) => {
    given.push(waitMs);
  });
  stops.add(async (waitMs) => {
    given.push(waitMs);
    await new Promise((resolve) => setTimeout(resolve, 50));
  });
  await stops.run();
  assert.ok(given[0] !== undefined && given[0] <= 60_000);
  assert.ok(given[1] !== undefined && given[1] <= given[0] - 40, `${given}`);
});
