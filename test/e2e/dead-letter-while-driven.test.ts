import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { markDeadLettered } from "../../src/runtime/dead-letters.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { postsInThread, taskInThread, taskWithStatus } from "../support/observe.ts";

// A model outage: the task's job fails try after try, and meanwhile the sweep (or a reply) queues
// other jobs for it. The model comes back; one of those jobs takes the task and runs it, while the
// job whose last try failed just before is dead-lettered. Its dead letter, read up to 2 s later,
// must not fail the task the other run is driving, mid-turn.
let h: Harness;
let answer: () => void = () => {};
const held = new Promise<void>((resolve) => {
  answer = resolve;
});
before(async () => {
  h = await startHarness({
    script: async () => {
      await held;
      return { content: "Order 1042 left the warehouse yesterday." };
    },
  });
});
after(async () => {
  await h.close();
});

test("a dead letter read while another run drives its task leaves the task to that run", async () => {
  const { ts } = await h.mention("where is order 1042?");
  await h.until("the run to ask the model", async () => h.model.requests.length === 1);
  const task = await taskInThread(h.db.db, ts);
  assert.ok(task?.lease_owner, "a run holds the task");

  await markDeadLettered(
    h.baton.deps,
    task.id,
    "it kept failing after several retries",
    new Date(),
  );
  answer();

  const done = await h.until("the answer", () => taskWithStatus(h.db.db, ts, "done", "failed"));
  assert.equal(done.status, "done", `the task ${done.status}: ${done.failure_reason}`);
  const posts = await h.until("the answer's post", async () => {
    const found = postsInThread(h.slack, ts);
    return found.length > 0 ? found : undefined;
  });
  assert.equal(posts.length, 1);
  assert.match(JSON.stringify(posts[0]?.args), /left the warehouse/);
});
