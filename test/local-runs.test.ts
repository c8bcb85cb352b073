import assert from "node:assert/strict";
import { test } from "node:test";
import { createLogger } from "../src/log.ts";
import { localRuns } from "../src/runtime/local-runs.ts";

const log = createLogger({ level: "silent" });

test("a reserved run is what the task's job waits on, from the reservation to the run's end", async () => {
  const runs = localRuns(2, log);
  assert.equal(runs.running("t1"), undefined);
  assert.equal(runs.reserve("t1"), true);
  // The job can arrive between the accept's commit and the run's start: it already waits.
  const waiting = runs.running("t1");
  assert.ok(waiting);
  let finish: () => void = () => {};
  runs.start("t1", () => new Promise<void>((resolve) => (finish = resolve)));
  await new Promise((r) => setImmediate(r));
  assert.equal(runs.running("t1"), waiting, "still under way");
  finish();
  await waiting;
  assert.equal(runs.running("t1"), undefined, "a finished run frees its slot");
});

test("a run that fails fails the job that waits on it, so the queue retries the task", async () => {
  const runs = localRuns(1, log);
  runs.reserve("t1");
  const waiting = runs.running("t1");
  runs.start("t1", async () => {
    throw new Error("the model is down");
  });
  await assert.rejects(waiting ?? Promise.resolve(), /the model is down/);
  assert.equal(runs.running("t1"), undefined);
});

test("a failed run that no job waits on is not an unhandled rejection", async () => {
  const runs = localRuns(1, log);
  runs.reserve("t1");
  runs.start("t1", async () => {
    throw new Error("nobody is waiting");
  });
  await runs.drain();
  assert.equal(runs.running("t1"), undefined);
});

test("past its capacity, a new task goes through the queue; a slot given back is free again", () => {
  const runs = localRuns(1, log);
  assert.equal(runs.reserve("t1"), true);
  assert.equal(runs.reserve("t2"), false, "every slot busy");
  runs.giveBack("t1");
  assert.equal(runs.running("t1"), undefined);
  assert.equal(runs.reserve("t2"), true);
  assert.equal(localRuns(0, log).reserve("t3"), false, "no workers: nothing runs here");
});

test("drain waits for every run under way", async () => {
  const runs = localRuns(2, log);
  const finished: string[] = [];
  for (const id of ["t1", "t2"]) {
    runs.reserve(id);
    runs.start(id, async () => {
      await new Promise((r) => setTimeout(r, 20));
      finished.push(id);
    });
  }
  await runs.drain();
  assert.deepEqual(finished.sort(), ["t1", "t2"]);
});
