import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { lockTask } from "../../src/db/tasks.repository.ts";
import { waitingOnLocks } from "../support/db.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { taskWithStatus } from "../support/observe.ts";

// Two people reply at once to a task the agent answered: one reply reopens it, the other finds it
// open. The trail says it was reopened once, by whoever's reply reopened it.
let h: Harness;
before(async () => {
  h = await startHarness({ script: () => ({ content: "Order 1042 left the warehouse." }) });
});
after(async () => {
  await h.close();
});

test("two replies at once to an answered task reopen it once", async () => {
  const { ts } = await h.mention("where is order 1042?");
  const task = await h.until("the answer", async () => {
    const row = await taskWithStatus(h.db.db, ts, "done");
    return row && !row.lease_owner ? row : undefined;
  });
  // Something holds the task's row (a person's click, say) while both replies are accepted.
  let replies: Promise<unknown> | undefined;
  await h.db.db.transaction().execute(async (tx) => {
    assert.ok(await lockTask(tx, task.id));
    replies = Promise.all([
      h.reply(ts, "any news?"),
      h.reply(ts, "also, can you check 1078?", { user: "U0OTHER" }),
    ]);
    await h.until(
      "both accepts to wait on the task",
      async () => (await waitingOnLocks(h.db.db)) >= 2,
    );
  });
  await replies;
  await h.until("the task to be answered again", async () => {
    const row = await taskWithStatus(h.db.db, ts, "done");
    return row && row.step_no > task.step_no ? row : undefined;
  });
  const reopened = await h.db.db
    .selectFrom("audit_events")
    .select(["actor_id", "data"])
    .where("task_id", "=", task.id)
    .where("kind", "=", "task_reopened")
    .execute();
  assert.equal(reopened.length, 1, JSON.stringify(reopened));
});
