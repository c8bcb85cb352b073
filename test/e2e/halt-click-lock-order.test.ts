import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { sql } from "kysely";
import * as approvalsDb from "../../src/db/approvals.repository.ts";
import { resumeAfterDecision } from "../../src/runtime/approval-deadline.ts";
import { markDeadLettered } from "../../src/runtime/dead-letters.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { refundCall, taskOfThread } from "../support/scripts-humans.ts";

// A click locks its approval, then the task; a task that stops locked the task, then its pending
// approvals, so a click and a stop at the same moment waited on each other until Postgres killed
// one (40P01). The stop now takes the approvals' locks first, in the click's order.

let h: Harness;
before(async () => {
  h = await startHarness({
    script: scriptByAgent({
      billing: [refundCall(), { content: "Refunded." }],
    }),
  });
});
after(async () => {
  await h.close();
});

test("a click and a stop at the same moment both finish: the click decides, the stop follows", async () => {
  const { ts } = await h.mention("billing: please refund order 1077, the lamp came back");
  const approval = await h.until("the refund to wait on its card", async () => {
    const row = await h.db.db.selectFrom("approvals").selectAll().executeTakeFirst();
    const task = await taskOfThread(h.db.db, ts);
    return row?.card_ts && task?.lease_owner === null ? row : undefined;
  });
  // No job workers from here on: the decision's job must not start a run, whose lease would make
  // the stop leave the task to it (a dead letter stops only a task no run drives).
  await h.restart({ workers: false });
  const deps = h.baton.deps;
  let release!: () => void;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  let hasDecided!: () => void;
  const clickDecided = new Promise<void>((resolve) => {
    hasDecided = resolve;
  });
  // The click's transaction as decideApproval (src/runtime/approvals.ts) runs it, held open
  // between its two statements while the stop starts.
  const click = deps.db.transaction().execute(async (tx) => {
    const row = await approvalsDb.decideApproval(tx, approval.id, {
      status: "approved",
      by: "U0LEE",
      reason: null,
      checkedApprovers: approval.approvers,
    });
    assert.ok(row);
    hasDecided();
    await gate;
    await resumeAfterDecision(deps, tx, row, { by: "U0LEE", reason: null });
  });
  // The click holds the approval's row (and its transaction began) before the stop is asked: the
  // stop's "failed at" comes after it, as a dead letter's does. (Polling pg_locks could see another
  // session's lock on approvals, such as a delivery stamping a card's ts, and ask the stop first.)
  await clickDecided;
  const halt = markDeadLettered(deps, approval.task_id, "the job died", new Date());
  await h.until("the stop to wait on the click", async () => {
    const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from pg_stat_activity
      where wait_event_type = 'Lock' and query ilike '%approvals%'`.execute(h.db.db);
    return (rows[0]?.n ?? 0) > 0;
  });
  release();
  await Promise.all([click, halt]);

  const decided = await approvalsDb.findApproval(h.db.db, approval.id);
  assert.equal(decided?.status, "approved", "the click decided; the stop did not withdraw it");
  const task = await h.db.db
    .selectFrom("tasks")
    .selectAll()
    .where("id", "=", approval.task_id)
    .executeTakeFirstOrThrow();
  assert.equal(task.status, "failed");
});
