import assert from "node:assert/strict";
import { test } from "node:test";
import { createLogger } from "../src/log.ts";
import { localRuns } from "../src/runtime/local-runs.ts";

const log = createLogger({ level: "silent" });
const tick = () => new Promise((r) => setImmediate(r));

test("a reserved run starts after the current request is answered, and frees its slot when it ends", async () => {
  const runs = localRuns(1, log);
  assert.equal(runs.reserve("t1"), true);
  let started = false;
  let finish: () => void = () => {};
  runs.start("t1", async () => {
    started = true;
    await new Promise<void>((resolve) => (finish = resolve));
  });
  assert.equal(started, false, "not in the request's own turn of the event loop");
  await tick();
  assert.equal(started, true);
  assert.equal(runs.reserve("t2"), false, "the one slot is busy");
  finish();
  await runs.drain();
  assert.equal(runs.reserve("t2"), true, "a finished run frees its slot");
});

test("a run that fails is logged and frees its slot; nothing is left unhandled", async () => {
  const runs = localRuns(1, log);
  runs.reserve("t1");
  runs.start("t1", async () => {
    throw new Error("the model is down");
  });
  await runs.drain();
  assert.equal(runs.reserve("t2"), true);
});

test("past its capacity, a new task goes through the queue; a slot given back is free again", () => {
  const runs = localRuns(1, log);
  assert.equal(runs.reserve("t1"), true);
  assert.equal(runs.reserve("t2"), false, "every slot busy");
  runs.giveBack("t1");
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
