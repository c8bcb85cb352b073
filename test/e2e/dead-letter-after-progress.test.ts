import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { sql } from "kysely";
import { markDeadLettered } from "../../src/runtime/dead-letters.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { postsInThread, waitForApprovalCard } from "../support/observe.ts";
import { REFUND_ARGS, settledTask, taskOfThread } from "../support/scripts-humans.ts";

// A model outage: one of the task's jobs fails try after try. Its last try fails while no run
// holds the task; then another job (the sweep's, or a reply's) takes the task, the model answers,
// and the task waits on a billing lead's approval. The first job's dead letter, read after that,
// is about a task that has moved on: it must not fail it, nor withdraw the approval it waits on.
let h: Harness;
let answer: () => void = () => {};
const held = new Promise<void>((resolve) => {
  answer = resolve;
});
before(async () => {
  h = await startHarness({
    script: scriptByAgent({
      billing: [
        async () => {
          await held;
          return { toolCalls: [{ name: "issue_refund", arguments: REFUND_ARGS }] };
        },
      ],
    }),
  });
});
after(async () => {
  await h.close();
});

/** The database's clock, which stamps a dead letter (pg-boss) and a task's activity alike. */
async function databaseNow(): Promise<Date> {
  const { rows } = await sql<{ now: Date }>`select clock_timestamp() as now`.execute(h.db.db);
  assert.ok(rows[0]);
  return rows[0].now;
}

test("a dead letter about a task that moved on since leaves it, and its approval, alone", async () => {
  const { ts } = await h.mention("billing: please refund order 1077, the lamp came back");
  await h.until("the run to ask the model", async () => h.model.requests.length === 1);
  // The other job's last try failed now: before this run's turn, which the model holds.
  const failedAt = await databaseNow();
  answer();
  const approval = await waitForApprovalCard(h, "the refund to wait on its card");
  await h.until("the run to give the task up", async () => {
    const task = await taskOfThread(h.db.db, ts);
    return task?.lease_owner === null;
  });

  await markDeadLettered(h.baton.deps, approval.task_id, "the model server is down", failedAt);

  const task = await taskOfThread(h.db.db, ts);
  assert.equal(task?.status, "waiting_human", `the task ${task?.status}: ${task?.failure_reason}`);
  const still = await h.db.db
    .selectFrom("approvals")
    .select("status")
    .where("id", "=", approval.id)
    .executeTakeFirstOrThrow();
  assert.equal(still.status, "pending", "the approval still waits on a billing lead");
  assert.equal(h.slack.callsTo("chat.update").length, 0, "the card keeps its buttons");
  assert.ok(
    postsInThread(h.slack, ts).every((p) => !/failed/i.test(String(p.args.text))),
    "no failure notice",
  );

  // A dead letter whose last try failed after the task's last move is the task's own: it stops it.
  await markDeadLettered(
    h.baton.deps,
    approval.task_id,
    "the model server is down",
    await databaseNow(),
  );
  const failed = await h.until("the task to fail", () => settledTask(h.db.db, ts, "failed"));
  assert.match(String(failed.failure_reason), /model server is down/);
});
