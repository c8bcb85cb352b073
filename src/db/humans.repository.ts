import { sql } from "kysely";
import type { Executor, Tx } from "./database.ts";

/** Approvals and escalations: a pause for a human is a row, decided once. */

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
    expiresAt: Date;
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
      expires_at: a.expiresAt,
    })
    .returning(["id"])
    .executeTakeFirstOrThrow();
}

export async function findApproval(db: Executor, id: string) {
  return db.selectFrom("approvals").selectAll().where("id", "=", id).executeTakeFirst();
}

/**
 * Decides a pending approval exactly once: of two clicks at the same moment, only the one whose
 * update finds the row still pending gets a row back.
 */
export async function decideApproval(
  tx: Tx,
  id: string,
  decision: {
    status: "approved" | "rejected" | "expired";
    by: string | null;
    reason: string | null;
    now: Date;
  },
) {
  return tx
    .updateTable("approvals")
    .set({
      status: decision.status,
      decided_by: decision.by,
      decided_at: decision.now,
      reason: decision.reason,
    })
    .where("id", "=", id)
    .where("status", "=", "pending")
    .returningAll()
    .executeTakeFirst();
}

/**
 * Decided approvals whose tool call the task has not yet settled (the worker does it); the lease
 * claim's statement (`claimLease`) asks the same question of its task: change both together.
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
    ])
    .where("approvals.task_id", "=", taskId)
    .orderBy("approvals.created_at")
    .execute();
}

export async function pendingPastDeadline(db: Executor, now: Date, limit: number) {
  return db
    .selectFrom("approvals")
    .select(["id", "task_id"])
    .where("status", "=", "pending")
    .where("expires_at", "<", now)
    .orderBy("expires_at")
    .limit(limit)
    .execute();
}

export async function markApprovalEscalated(
  tx: Tx,
  id: string,
  to: { users: string[]; groups: string[] },
  expiresAt: Date,
) {
  return tx
    .updateTable("approvals")
    .set({
      approvers: JSON.stringify(to),
      fallback: null,
      escalated_at: sql`now()`,
      expires_at: expiresAt,
    })
    .where("id", "=", id)
    .where("status", "=", "pending")
    .returningAll()
    .executeTakeFirst();
}

export async function insertEscalation(
  tx: Executor,
  e: {
    taskId: string;
    stepNo: number;
    fromAgent: string;
    note: Record<string, unknown>;
    owner: { kind: string; id: string };
    fallback: { users: string[]; groups: string[] } | undefined;
    respondBy: Date;
  },
) {
  return tx
    .insertInto("escalations")
    .values({
      task_id: e.taskId,
      step_no: e.stepNo,
      from_agent: e.fromAgent,
      note: JSON.stringify(e.note),
      owner: JSON.stringify(e.owner),
      fallback: e.fallback ? JSON.stringify(e.fallback) : null,
      respond_by: e.respondBy,
    })
    .returning(["id"])
    .executeTakeFirstOrThrow();
}

export async function findEscalation(db: Executor, id: string) {
  return db.selectFrom("escalations").selectAll().where("id", "=", id).executeTakeFirst();
}

export async function decideEscalation(
  tx: Tx,
  id: string,
  decision: {
    status: "taken_over" | "sent_back";
    by: string;
    decision: Record<string, unknown>;
    now: Date;
  },
) {
  return tx
    .updateTable("escalations")
    .set({
      status: decision.status,
      decided_by: decision.by,
      decided_at: decision.now,
      decision: JSON.stringify(decision.decision),
    })
    .where("id", "=", id)
    .where("status", "=", "open")
    .returningAll()
    .executeTakeFirst();
}

/** Open escalations past their respond-by time that have not been moved on yet. */
export async function escalationsPastDeadline(db: Executor, now: Date, limit: number) {
  return db
    .selectFrom("escalations")
    .selectAll()
    .where("status", "=", "open")
    .where("respond_by", "<", now)
    .where("escalated_at", "is", null)
    .orderBy("respond_by")
    .limit(limit)
    .execute();
}

/** Moves an open escalation to its fallback owner once; returns nothing if it moved meanwhile. */
export async function reassignEscalation(
  tx: Tx,
  id: string,
  owner: { kind: string; id: string },
  respondBy: Date,
) {
  return tx
    .updateTable("escalations")
    .set({ owner: JSON.stringify(owner), escalated_at: sql`now()`, respond_by: respondBy })
    .where("id", "=", id)
    .where("status", "=", "open")
    .where("escalated_at", "is", null)
    .returningAll()
    .executeTakeFirst();
}
