import assert from "node:assert/strict";
import { test } from "node:test";
import { sql } from "kysely";
import { crashRigs, leaseRunsOut, untilCrash } from "../support/crash-rig.ts";
import { postsInThread, taskInThread } from "../support/observe.ts";

// A reply that comes while the agent writes its final answer finds the task active: it is kept and
// its job queued, and that job, finding the run's lease held, ends at once. The run's release would
// open the task again for it; here the process is killed (SIGKILL) after the answer committed and
// before that release. The task is answered, its lease runs out, and its reply waits unread.
const startRig = crashRigs();

test("a reply kept while the answer was written, then a crash before the release: it is answered after the restart", async () => {
  let answerFirst: () => void = () => {};
  const firstHeld = new Promise<void>((resolve) => {
    answerFirst = resolve;
  });
  const rig = await startRig(async (_request, ctx) => {
    if (ctx.callIndex > 0) return { content: "Order 1078 ships tomorrow." };
    await firstHeld;
    return { content: "Order 1042 left the warehouse yesterday." };
  });
  const { db, slack, model } = rig;
  const first = await rig.start({ maintenance: false });

  const ts = await rig.mention("where is order 1042?");
  await untilCrash("the model to be asked", async () => model.requests.length === 1);
  const task = await untilCrash("the task", () => taskInThread(db.db, ts));

  // The requester replies while the agent is still answering: the task is active.
  await rig.reply(ts, "and order 1078?");
  // Every job of the task (the start's, due when the lease would run out, and the reply's) found
  // the lease held by the run and ended.
  await untilCrash("the task's jobs to end while the run holds it", async () => {
    const { rows } = await sql<{ open: number; all: number }>`
      select count(*) filter (where state <> 'completed')::int as open, count(*)::int as all
      from pgboss.job where name = 'task.run' and data->>'taskId' = ${task.id}`.execute(db.db);
    return rows[0]?.all === 2 && rows[0].open === 0;
  });

  // The answer commits; Slack takes its post and the process dies before hearing back.
  const answerPosted = slack.holdAnswer("chat.postMessage", (call) =>
    JSON.stringify(call.args).includes("left the warehouse"),
  );
  answerFirst();
  await answerPosted.arrived;
  await first.kill();
  await first.exited;
  answerPosted.release();
  const crashed = await taskInThread(db.db, ts);
  assert.equal(crashed?.status, "done");
  assert.ok(crashed?.lease_owner, "the dead run never gave the task up");

  await leaseRunsOut(db, task.id);
  await rig.start({ maintenance: true });
  await untilCrash("the reply to be answered", async () =>
    postsInThread(slack, ts).some((c) => JSON.stringify(c.args).includes("1078 ships")),
  );
  assert.equal(model.requests.length, 2, "the answer was not asked for again");
  const posts = postsInThread(slack, ts).filter((c) =>
    JSON.stringify(c.args).includes("left the warehouse"),
  );
  assert.equal(posts.length, 1, "the first answer is in the thread once");
});
