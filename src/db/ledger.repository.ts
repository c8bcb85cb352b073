import { sql } from "kysely";
import type { ChatMessage } from "../core/model.ts";
import type { Executor, Tx } from "./database.ts";

/** The ledger: ownership changes, model and tool calls, the conversation and the audit trail. */

export interface AuditInput {
  taskId: string | null;
  actor: { kind: "agent" | "human" | "system" | "slack"; id: string };
  kind: string;
  data?: Record<string, unknown>;
}

export function auditRows(events: readonly AuditInput[]) {
  return events.map((e) => ({
    task_id: e.taskId,
    actor_kind: e.actor.kind,
    actor_id: e.actor.id,
    kind: e.kind,
    data: JSON.stringify(e.data ?? {}),
  }));
}

export async function audit(db: Executor, events: AuditInput | AuditInput[]): Promise<void> {
  const list = Array.isArray(events) ? events : [events];
  if (list.length === 0) return;
  await db.insertInto("audit_events").values(auditRows(list)).execute();
}

/** The audit kinds of a model reply that could not be used: each counts toward its strikes. */
const UNUSABLE_REPLY_KINDS = ["model_error", "tool_refused"];

/**
 * Why the model's replies at the task's `steps` latest steps with an unusable one could not be
 * used: each event's `reason`, oldest first. Events written before they named their `step` are
 * left out. Read after the turns behind have landed (see onLastStrike).
 */
export async function unusableReplyReasons(
  db: Executor,
  taskId: string,
  steps: number,
): Promise<{ step: number; reason: string }[]> {
  const step = sql<number>`(data ->> 'step')::int`;
  const unusable = db
    .selectFrom("audit_events")
    .where("task_id", "=", taskId)
    .where("kind", "in", UNUSABLE_REPLY_KINDS);
  const latest = unusable
    .select(step.as("step"))
    .distinct()
    .where(step, "is not", null)
    .orderBy("step", "desc")
    .limit(steps);
  const rows = await unusable
    .select([step.as("step"), sql<string>`coalesce(data ->> 'reason', '')`.as("reason")])
    .where(step, "in", latest)
    .orderBy("id")
    .execute();
  return rows;
}

export interface HandoffRecord {
  taskId: string;
  stepNo: number;
  kind: HandoffKind;
  from: { kind: string; id: string };
  to: { kind: string; id: string };
  note: Record<string, unknown>;
}

export function handoffRow(handoff: HandoffRecord) {
  return {
    task_id: handoff.taskId,
    step_no: handoff.stepNo,
    kind: handoff.kind,
    from_kind: handoff.from.kind,
    from_id: handoff.from.id,
    to_kind: handoff.to.kind,
    to_id: handoff.to.id,
    note: JSON.stringify(handoff.note),
  };
}

export async function insertHandoff(tx: Executor, handoff: HandoffRecord): Promise<void> {
  await tx.insertInto("handoffs").values(handoffRow(handoff)).execute();
}

/** A handoff from one agent to another: what the hop limit counts (a task's `hop_count`). */
export function isAgentHandoff(h: { from_kind: string; to_kind: string }): boolean {
  return h.from_kind === "agent" && h.to_kind === "agent";
}

export async function ownershipHistory(db: Executor, taskId: string) {
  return db
    .selectFrom("handoffs")
    .select(["kind", "from_kind", "from_id", "to_kind", "to_id", "note", "created_at", "step_no"])
    .where("task_id", "=", taskId)
    .orderBy("id")
    .execute();
}

export type ConversationRecord = {
  taskId: string;
  stintNo: number;
  stepNo: number;
  message: ChatMessage;
};

export function conversationRows(rows: readonly ConversationRecord[]) {
  return rows.map((r) => ({
    task_id: r.taskId,
    stint_no: r.stintNo,
    step_no: r.stepNo,
    message: JSON.stringify(r.message),
  }));
}

export async function appendConversation(tx: Tx, rows: ConversationRecord[]): Promise<void> {
  if (rows.length === 0) return;
  await tx.insertInto("conversation").values(conversationRows(rows)).execute();
}

export interface ModelCallRecord {
  taskId: string;
  stepNo: number;
  agentId: string;
  model: string;
  promptTokens: number;
  completionTokens: number;
  costUsd: number;
  latencyMs: number;
  requestChars: number;
  outcome: string;
  /** The server sent no usage: the tokens were estimated from characters (default false). */
  usageEstimated?: boolean;
}

export async function findToolCall(db: Executor, idempotencyKey: string) {
  return db
    .selectFrom("tool_calls")
    .selectAll()
    .where("idempotency_key", "=", idempotencyKey)
    .executeTakeFirst();
}

/**
 * The arguments of the task's calls of `tool` that an approval threshold counts (see
 * `countsEarlierCalls`): those that ran (`done`), and those parked on an approval that is still
 * pending or was approved (it runs when the worker settles it). Not those rejected, expired or
 * withdrawn, refused by the allowlist or a rate limit, shadowed, or `failed` (the tool refused its
 * input, or an approved call could not run): nothing was done. Read in the turn's transaction,
 * after the task's lock, so a run that committed a call first is counted.
 */
export async function countedCallArgs(db: Executor, taskId: string, tool: string) {
  const rows = await db
    .selectFrom("tool_calls")
    .leftJoin("approvals", "approvals.tool_call_id", "tool_calls.idempotency_key")
    .select("tool_calls.args")
    .where("tool_calls.task_id", "=", taskId)
    .where("tool_calls.tool", "=", tool)
    .where((eb) =>
      eb.or([
        eb("tool_calls.status", "=", "done"),
        eb.and([
          eb("tool_calls.status", "=", "pending_approval"),
          eb("approvals.status", "in", ["pending", "approved"]),
        ]),
      ]),
    )
    .execute();
  return rows.map((r) => r.args);
}

/** The task's writes that ran, oldest first: what a person taking the task over must not redo. */
export async function writesDone(db: Executor, taskId: string) {
  return db
    .selectFrom("tool_calls")
    .select(["tool", "args"])
    .where("task_id", "=", taskId)
    .where("status", "=", "done")
    .where("tool_class", "<>", "read")
    .orderBy("id")
    .execute();
}

export interface ToolCallRecord {
  taskId: string;
  stepNo: number;
  agentId: string;
  tool: string;
  toolClass: string;
  args: unknown;
  idempotencyKey: string;
  status:
    | "done"
    | "failed"
    | "refused"
    | "rate_limited"
    | "pending_approval"
    | "shadowed"
    | "rejected";
  result: unknown;
  allowedBy: string | null;
}

function toolCallRow(call: ToolCallRecord) {
  return {
    task_id: call.taskId,
    step_no: call.stepNo,
    agent_id: call.agentId,
    tool: call.tool,
    tool_class: call.toolClass,
    args: JSON.stringify(call.args ?? null),
    idempotency_key: call.idempotencyKey,
    status: call.status,
    result: JSON.stringify(call.result ?? null),
    allowed_by: call.allowedBy,
  };
}

export async function insertToolCall(tx: Executor, call: ToolCallRecord): Promise<void> {
  await tx.insertInto("tool_calls").values(toolCallRow(call)).execute();
}

/**
 * How a tool call ends: run (done, failed), or not run because of a person's decision or none,
 * or (`not_run`) approved but no longer allowed by the agents file when it came to run.
 */
export type SettledStatus = "done" | "failed" | "rejected" | "expired" | "withdrawn" | "not_run";

export async function settleToolCall(
  tx: Tx,
  idempotencyKey: string,
  settled: {
    status: SettledStatus;
    result: unknown;
    allowedBy: string | null;
  },
): Promise<void> {
  await tx
    .updateTable("tool_calls")
    .set({
      status: settled.status,
      result: JSON.stringify(settled.result ?? null),
      allowed_by: settled.allowedBy,
    })
    .where("idempotency_key", "=", idempotencyKey)
    .execute();
}

export type HandoffKind =
  | "start"
  | "transfer"
  | "hand_back"
  | "escalation"
  | "take_over"
  | "human_return"
  | "reassign"
  | "approval_request"
  | "approval_decision"
  | "approval_escalated";
