import assert from "node:assert/strict";
import { test } from "node:test";
import { sql } from "kysely";
import {
  decideApproval,
  insertApproval,
  markApprovalEscalated,
} from "../../src/db/approvals.repository.ts";
import type { Tx } from "../../src/db/database.ts";
import { databaseForFile, insertOrderTask } from "../support/db.ts";

// Replicas sweep deadlines while people click: each move of an approval is one conditional
// update that checks the row is still as its caller saw it, so a move made on a stale read, or
// one that waited on another's row lock, finds nothing to do.

const t = databaseForFile();

const APPROVERS = { users: ["U0LEE"], groups: [] };
const FALLBACK = { users: ["U0OPSMANAGER"], groups: [] };
/** A refund waiting for U0LEE, its deadline `dueIn` minutes from now (negative: past). */
async function parkedRefund(thread: string, dueIn: number) {
  const task = await insertOrderTask(t.db, thread);
  return t.db.transaction().execute((tx) =>
    insertApproval(tx, {
      taskId: task.id,
      stepNo: 1,
      toolCallId: `call-${thread}`,
      modelCallId: `model-${thread}`,
      agentId: "billing",
      tool: "issue_refund",
      args: { order_id: "1077" },
      policyId: "refunds",
      requesterId: "U0DANA",
      approvers: APPROVERS,
      fallback: FALLBACK,
      expiresInMs: dueIn * 60_000,
    }),
  );
}

const escalate = (tx: Tx, id: string) => markApprovalEscalated(tx, id, FALLBACK);

/**
 * Runs `first` in a transaction that stays open until `second`, in its own transaction, is
 * waiting on the row `first` updated; then commits and returns what `second` got.
 */
async function secondWaitsOnFirst<T>(
  first: (tx: Tx) => Promise<unknown>,
  second: (tx: Tx) => Promise<T>,
): Promise<T> {
  let waiting: Promise<T> | undefined;
  await t.db.transaction().execute(async (tx) => {
    assert.ok(await first(tx), "the first move is made");
    waiting = t.db.transaction().execute(second);
    await blockedOnALock();
  });
  return waiting as Promise<T>;
}

async function blockedOnALock() {
  for (let tries = 0; tries < 100; tries++) {
    const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from pg_locks where not granted
        -- The server's locks: another test file's database may have a waiter too.
        and pid in (select pid from pg_stat_activity where datname = current_database())`.execute(
      t.db,
    );
    if (rows[0]?.n) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error("the second transaction never waited on the first");
}

const rowOf = (id: string) =>
  t.db.selectFrom("approvals").selectAll().where("id", "=", id).executeTakeFirstOrThrow();

test("two sweeps at once escalate an approval once", async () => {
  const { id } = await parkedRefund("200.1", -1);
  const second = await secondWaitsOnFirst(
    (tx) => escalate(tx, id),
    (tx) => escalate(tx, id),
  );
  assert.equal(second, undefined, "the second sweep finds it already escalated");
  assert.deepEqual((await rowOf(id)).approvers, FALLBACK);
});

test("an approval is not escalated before its deadline", async () => {
  const { id } = await parkedRefund("200.2", 5);
  const moved = await t.db.transaction().execute((tx) => escalate(tx, id));
  assert.equal(moved, undefined);
  assert.equal((await rowOf(id)).escalated_at, null);
});

/** The expiry a sweep writes, now. */
const expireNow = (id: string) =>
  t.db.transaction().execute((tx) =>
    decideApproval(tx, id, {
      status: "expired",
      by: null,
      reason: "expired without a decision",
    }),
  );

test("a sweep that listed an approval before another escalated it does not expire it", async () => {
  const { id } = await parkedRefund("200.3", -1);
  assert.ok(await t.db.transaction().execute((tx) => escalate(tx, id)));
  const expired = await expireNow(id);
  assert.equal(expired, undefined, "its new deadline has not passed");
  assert.equal((await rowOf(id)).status, "pending");
});

test("an approval with a fallback it has not used yet does not expire", async () => {
  const { id } = await parkedRefund("200.4", -1);
  const expired = await expireNow(id);
  assert.equal(expired, undefined);
  assert.equal((await rowOf(id)).status, "pending");
});

const approveAs = (id: string, approvers: typeof APPROVERS) => (tx: Tx) =>
  decideApproval(tx, id, {
    status: "approved",
    by: "U0LEE",
    reason: null,
    checkedApprovers: approvers,
  });

test("a click checked against the first approvers decides nothing once the approval went to the fallback", async () => {
  const { id } = await parkedRefund("200.5", -1);
  // U0LEE's click was checked before the deadline; a sweep escalated it before its update.
  assert.ok(await t.db.transaction().execute((tx) => escalate(tx, id)));
  const decided = await t.db.transaction().execute(approveAs(id, APPROVERS));
  assert.equal(decided, undefined, "U0LEE is no longer an approver");
  assert.equal((await rowOf(id)).status, "pending");
});

test("an approval is not approved after its deadline", async () => {
  const { id } = await parkedRefund("200.6", -1);
  const decided = await t.db.transaction().execute(approveAs(id, APPROVERS));
  assert.equal(decided, undefined);
  assert.equal((await rowOf(id)).status, "pending");
});

test("an approval is approved before its deadline by the approvers it was checked against", async () => {
  const { id } = await parkedRefund("200.7", 5);
  const decided = await t.db.transaction().execute(approveAs(id, APPROVERS));
  assert.equal(decided?.status, "approved");
});
