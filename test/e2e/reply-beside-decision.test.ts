import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { sql } from "kysely";
import { insertInput } from "../../src/db/turn-reads.repository.ts";
import { wakeIfMissed } from "../../src/runtime/accept.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { answerThenReply } from "../support/scripts.ts";
import { finishedTask } from "../support/scripts-humans.ts";

// A reply to a task waiting on an approval is read without the task's lock, and queues no run: the
// run after the decision reads it. If a decision and that whole run fall between the accept's read
// and its commit, the run ends the task without seeing the reply, and gives it up before the reply
// is visible. The accept checks again after its commit (wakeIfMissed); this test sets up the state
// that race leaves (an answered task, a reply nobody read) and calls the check as the accept does.

let h: Harness;
const { script, asked } = answerThenReply();
before(async () => {
  h = await startHarness({ script });
});
after(async () => {
  await h.close();
});

test("a reply that an ending run could not see is answered after the accept commits", async () => {
  const { ts } = await h.mention("where is order 1042?");
  const task = await h.until("the first answer", () => finishedTask(h.db.db, ts));
  await h.db.db
    .transaction()
    .execute((tx) =>
      insertInput(tx, { taskId: task.id, authorId: "U0REQUESTER", text: "and order 1078?" }),
    );

  await wakeIfMissed(h.baton.deps, task.id);

  await h.until("the reply to be answered", async () => (asked.length === 2 ? true : undefined));
  assert.match(asked[1] ?? "", /and order 1078\?/);
  await h.until("the task to be answered again", async () => {
    const again = await finishedTask(h.db.db, ts);
    return again && again.step_no > task.step_no ? again : undefined;
  });
});

test("a task still waiting on its approval is left to the decision's run", async () => {
  const { ts } = await h.mention("where is order 1077?");
  const task = await h.until("the answer", () => finishedTask(h.db.db, ts));
  await h.db.db
    .updateTable("tasks")
    .set({ status: "waiting_human" })
    .where("id", "=", task.id)
    .execute();
  await h.db.db
    .transaction()
    .execute((tx) => insertInput(tx, { taskId: task.id, authorId: "U0REQUESTER", text: "hello?" }));
  const jobs = async () => {
    const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from pgboss.job
      where name = 'task.run' and data->>'taskId' = ${task.id}`.execute(h.db.db);
    return rows[0]?.n ?? 0;
  };
  const queued = await jobs();

  await wakeIfMissed(h.baton.deps, task.id);

  assert.equal(await jobs(), queued, "no run is queued for it");
  const after = await h.db.db
    .selectFrom("tasks")
    .select("status")
    .where("id", "=", task.id)
    .executeTakeFirstOrThrow();
  assert.equal(after.status, "waiting_human");
});
