import { type NotNull, sql } from "kysely";
import type { Executor, Tx } from "./database.ts";

/**
 * Approvals: a tool call paused for a person is a row, decided once. Its deadline is set and judged
 * by the database's clock, the one every replica shares: a replica whose own clock is off would
 * otherwise expire an approval early, or keep one open late, and two replicas would disagree.
 */

type People = { users: string[]; groups: string[] };

export async function insertApproval(
  tx: Executor,
  a: {
    taskId: string;
    stepNo: number;
    toolCallId: string;
    modelCallId: string;
    agentId: string;
    tool: string;
    args: Record<string, unknown>;
    policyId: string;
    requesterId: string;
    approvers: { users: string[]; groups: string[] };
    fallback: { users: string[]; groups: string[] } | undefined;
    /** From now, by the database's clock (a negative one: already past). */
    expiresInMs: number;
    /** Why it waits, when its arguments alone do not say. */
    why?: string | undefined;
  },
) {
  return tx
    .insertInto("approvals")
    .values({
      task_id: a.taskId,
      step_no: a.stepNo,
      tool_call_id: a.toolCallId,
      model_call_id: a.modelCallId,
      agent_id: a.agentId,
      tool: a.tool,
      args: JSON.stringify(a.args),
      policy_id: a.policyId,
      requester_id: a.requesterId,
      approvers: JSON.stringify(a.approvers),
      fallback: a.fallback ? JSON.stringify(a.fallback) : null,
      expires_at: sql<Date>`now() + ${a.expiresInMs}::float8 * interval '1 millisecond'`,
      why: a.why ?? null,
    })
    .returning(["id", "expires_at"])
    .executeTakeFirstOrThrow();
}

/** The approval, and whether its deadline has passed by the database's clock. */
export async function findApproval(db: Executor, id: string) {
  return db
    .selectFrom("approvals")
    .selectAll()
    .select(sql<boolean>`expires_at <= now()`.as("past_deadline"))
    .where("id", "=", id)
    .executeTakeFirst();
}

/**
 * A person's decision holds only as checked: before the deadline, and by the approvers the click
 * was authorized against (a sweep may hand the approval to its fallback meanwhile). An expiry
 * holds only past the deadline, and once the fallback, if any, has had its turn. A cancellation
 * (the agents file no longer lets the call run) holds whenever nobody decided first. The deadline
 * is judged, and the decision stamped, by the database's clock.
 */
export type ApprovalDecision =
  | {
      status: "approved" | "rejected";
      by: string;
      reason: string | null;
      checkedApprovers: People;
    }
  | { status: "expired" | "cancelled"; by: null; reason: string };

/**
 * Decides a pending approval exactly once: of two clicks (or a click and a sweep) at the same
 * moment, only the one whose update finds the row still as it checked it gets a row back.
 */
export async function decideApproval(tx: Tx, id: string, decision: ApprovalDecision) {
  return tx
    .updateTable("approvals")
    .set({
      status: decision.status,
      decided_by: decision.by,
      decided_at: sql<Date>`now()`,
      reason: decision.reason,
    })
    .where("id", "=", id)
    .where("status", "=", "pending")
    .where((eb) => {
      switch (decision.status) {
        case "expired":
          return eb.and([
            eb("expires_at", "<=", sql<Date>`now()`),
            eb.or([eb("fallback", "is", null), eb("escalated_at", "is not", null)]),
          ]);
        case "cancelled":
          return eb.and([]);
        default:
          return eb.and([
            eb("expires_at", ">", sql<Date>`now()`),
            eb("approvers", "=", sql<People>`${JSON.stringify(decision.checkedApprovers)}::jsonb`),
          ]);
      }
    })
    .returningAll()
    .$narrowType<{ decided_at: NotNull }>()
    .executeTakeFirst();
}

/**
 * Locks the task's pending approvals. A click and the deadline sweep lock an approval before its
 * task; whatever locks the task first and then changes its approvals takes these locks before the
 * task's, in the same order, or the two wait on each other until Postgres kills one.
 */
export async function lockPendingApprovals(tx: Tx, taskId: string): Promise<void> {
  await tx
    .selectFrom("approvals")
    .select("id")
    .where("task_id", "=", taskId)
    .where("status", "=", "pending")
    .orderBy("id")
    .forUpdate()
    .execute();
}

/**
 * A task that stopped takes back what it asked people to decide: its cards lose their buttons, and
 * a late click decides nothing. The caller settles the parked calls in the same transaction.
 */
export async function withdrawPendingApprovals(tx: Executor, taskId: string) {
  return tx
    .updateTable("approvals")
    .set({ status: "withdrawn", decided_at: sql<Date>`now()`, reason: "the task stopped" })
    .where("task_id", "=", taskId)
    .where("status", "=", "pending")
    .returningAll()
    .$narrowType<{ decided_at: NotNull }>()
    .execute();
}

/**
 * The latest call of `tool` in the task that a person rejected, if any: a call of it again waits
 * for a person whatever its arguments (see `gateAfterRejection`).
 */
export async function lastRejected(db: Executor, taskId: string, tool: string) {
  return db
    .selectFrom("approvals")
    .select(["policy_id", "approvers", "expires_at", "created_at"])
    .where("task_id", "=", taskId)
    .where("tool", "=", tool)
    .where("status", "=", "rejected")
    .orderBy("created_at", "desc")
    .limit(1)
    .executeTakeFirst();
}

/**
 * Decided approvals whose tool call the task has not yet settled (the worker does it); `decided` in
 * `TURN_READS` (read by the lease claim and the turn's lock) asks the same question: change both
 * together.
 */
function decidedUnsettledQuery(db: Executor) {
  return db
    .selectFrom("approvals")
    .innerJoin("tool_calls", "tool_calls.idempotency_key", "approvals.tool_call_id")
    .where("approvals.status", "<>", "pending")
    .where("tool_calls.status", "=", "pending_approval");
}

export async function decidedUnsettled(db: Executor, taskId: string) {
  return decidedUnsettledQuery(db)
    .select([
      "approvals.id",
      "approvals.status",
      "approvals.decided_by",
      "approvals.reason",
      "approvals.tool",
      "approvals.args",
      "approvals.tool_call_id",
      "approvals.model_call_id",
      "approvals.agent_id",
      "approvals.created_at",
      // What its card shows, should the call not run after all.
      "approvals.approvers",
      "approvals.expires_at",
      "approvals.why",
      "approvals.decided_at",
    ])
    .where("approvals.task_id", "=", taskId)
    .orderBy("approvals.created_at")
    .execute();
}

/** Pending approvals past their deadline, by the database's clock. */
export async function pendingPastDeadline(db: Executor, limit: number) {
  return db
    .selectFrom("approvals")
    .select(["id", "task_id"])
    .where("status", "=", "pending")
    .where("expires_at", "<=", sql<Date>`now()`)
    .orderBy("expires_at")
    .limit(limit)
    .execute();
}

/**
 * Hands a due approval to its fallback once: a second sweep (or click) that waited on this row
 * finds it escalated, with a deadline not yet due, and gets nothing back. The fallback's deadline
 * is as far off as the first one was from the request (a minute at least), by the database's clock.
 */
export async function markApprovalEscalated(tx: Tx, id: string, to: People) {
  return tx
    .updateTable("approvals")
    .set({
      approvers: JSON.stringify(to),
      fallback: null,
      escalated_at: sql<Date>`now()`,
      // The old row's values: the first window, from the request to its deadline.
      expires_at: sql<Date>`now() + greatest(expires_at - created_at, interval '1 minute')`,
    })
    .where("id", "=", id)
    .where("status", "=", "pending")
    .where("escalated_at", "is", null)
    .where("expires_at", "<=", sql<Date>`now()`)
    .returningAll()
    .executeTakeFirst();
}

/**
 * The task's model calls since a person last decided on one of its calls (all of them when nobody
 * has): the turns a decision started afresh, for the turn limit.
 */
export async function modelCallsSinceDecision(db: Executor, taskId: string): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from model_calls
    where task_id = ${taskId} and created_at > coalesce(
      (select max(decided_at) from approvals where task_id = ${taskId}), '-infinity')`.execute(db);
  return rows[0]?.n ?? 0;
}

/**
 * Who could decide an approval before its deadline gave it to the fallback: users and groups, as
 * the `approval_escalated` handoff recorded them (none if it never went to one).
 */
export async function approversBeforeFallback(
  db: Executor,
  approval: { id: string; task_id: string },
): Promise<string[]> {
  const row = await db
    .selectFrom("handoffs")
    .select("from_id")
    .where("task_id", "=", approval.task_id)
    .where("kind", "=", "approval_escalated")
    .where(sql<string>`note ->> 'approval_id'`, "=", String(approval.id))
    .orderBy("id")
    .executeTakeFirst();
  return row ? row.from_id.split(",").filter((id) => id !== "") : [];
}

/** The card of the task's approval waiting on a person, where it is in Slack, if it is there yet. */
export async function pendingApprovalCard(db: Executor, taskId: string) {
  const row = await db
    .selectFrom("approvals")
    .select(["card_channel", "card_ts"])
    .where("task_id", "=", taskId)
    .where("status", "=", "pending")
    .orderBy("created_at", "desc")
    .limit(1)
    .executeTakeFirst();
  return row?.card_channel && row.card_ts
    ? { channel: row.card_channel, ts: row.card_ts }
    : undefined;
}

/** The calls the task's agent waits on a person to approve, oldest first. */
export async function pendingCalls(db: Executor, taskId: string) {
  return db
    .selectFrom("approvals")
    .select(["tool", "agent_id"])
    .where("task_id", "=", taskId)
    .where("status", "=", "pending")
    .orderBy("created_at")
    .execute();
}

/** Every approval waiting on a person, oldest first (approvals_pending_created_idx). */
export async function allPendingCalls(db: Executor) {
  return db
    .selectFrom("approvals")
    .select(["id", "task_id", "tool", "agent_id"])
    .where("status", "=", "pending")
    .orderBy("created_at")
    .execute();
}
