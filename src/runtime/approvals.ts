import type { Gate } from "../core/policy.ts";
import { mayDecide } from "../core/policy.ts";
import type { ToolDefinition } from "../core/tools/tool.ts";
import * as humans from "../db/humans.repository.ts";
import { audit, insertHandoff } from "../db/ledger.repository.ts";
import { enqueueOutbox } from "../db/outbox.repository.ts";
import type { ApprovalRow } from "../db/schema.ts";
import { lockTask, updateTask } from "../db/tasks.repository.ts";
import { NotFoundError } from "../errors.ts";
import type { RuntimeDeps } from "./deps.ts";
import type { AgentEffects } from "./effects.ts";
import { cardUpdate, personaOf, post } from "./messages.ts";
import { deliverOutbox } from "./outbox.ts";

type ApprovalGate = Extract<Gate, { kind: "approval" }>;

/** Parks a gated call: a row to decide, a card to click, the task waiting on a human. */
export async function requestApproval(
  fx: AgentEffects,
  call: { callId: string; key: string; tool: ToolDefinition; args: unknown; gate: ApprovalGate },
): Promise<void> {
  const { task, agent, gate } = { ...fx, gate: call.gate };
  const expiresAt = new Date(fx.deps.clock.now().getTime() + gate.expiresAfterMs);
  const args = call.args as Record<string, unknown>;
  const approvers = { users: [...gate.approvers.users], groups: [...gate.approvers.groups] };
  const { id } = await humans.insertApproval(fx.tx, {
    taskId: task.id,
    stepNo: fx.stepNo,
    toolCallId: call.key,
    modelCallId: call.callId,
    agentId: agent.id,
    tool: call.tool.name,
    args,
    policyId: gate.policyId,
    requesterId: task.requester_id,
    approvers,
    fallback: gate.fallback && {
      users: [...gate.fallback.users],
      groups: [...gate.fallback.groups],
    },
    expiresAt,
  });
  Object.assign(fx.changes, { status: "waiting_human" });
  await insertHandoff(fx.tx, {
    taskId: task.id,
    stepNo: fx.stepNo,
    kind: "approval_request",
    from: { kind: "agent", id: agent.id },
    to: { kind: "human", id: [...approvers.users, ...approvers.groups].join(",") },
    note: { approval_id: id, tool: call.tool.name, args, policy: gate.policyId },
  });
  fx.outbox.push(
    post(
      task,
      approvalIntent(task, agent, {
        id,
        tool: call.tool.name,
        args,
        approvers,
        expiresAt,
        state: { status: "pending" },
      }),
      {
        table: "approvals",
        id,
      },
    ),
  );
  fx.audits.push({
    taskId: task.id,
    actor: { kind: "agent", id: agent.id },
    kind: "approval_requested",
    data: {
      approval_id: id,
      tool: call.tool.name,
      args,
      policy: gate.policyId,
      approvers,
      expires_at: expiresAt.toISOString(),
    },
  });
}

export type ApprovalState =
  | { status: "pending" }
  | { status: "approved"; by: string; at: string }
  | { status: "rejected"; by: string; at: string; reason: string }
  | { status: "expired"; at: string }
  | { status: "escalated"; to: string; at: string };

export function approvalIntent(
  task: { channel_id: string; thread_ts: string; requester_id: string },
  agent: { name: string; icon: string },
  a: {
    id: string;
    tool: string;
    args: Record<string, unknown>;
    approvers: { users: string[]; groups: string[] };
    expiresAt: Date;
    state: ApprovalState;
    updateTs?: string | null;
  },
) {
  return {
    kind: "approval_card" as const,
    channel: task.channel_id,
    threadTs: task.thread_ts,
    persona: personaOf(agent),
    ...(a.updateTs ? { updateTs: a.updateTs } : {}),
    approval: {
      approvalId: a.id,
      agentName: agent.name,
      toolName: a.tool,
      args: a.args,
      requesterId: task.requester_id,
      approvers: a.approvers,
      expiresAt: a.expiresAt.toISOString(),
      state: a.state,
    },
  };
}

export type DecisionOutcome =
  | { outcome: "decided"; status: "approved" | "rejected" }
  | { outcome: "already_decided"; status: string; by: string | null; at: Date | null }
  | { outcome: "expired" }
  | { outcome: "refused"; reason: "own_request" | "not_an_approver" };

type ClickInput = { approvalId: string; userId: string; decision: "approved" | "rejected" };

/**
 * Whether this click may decide: a decided, expired or unauthorized request answers with the
 * outcome (audited, as every refused click is); undefined means the user may decide now.
 */
async function refusal(
  deps: RuntimeDeps,
  approval: ApprovalRow,
  input: ClickInput,
): Promise<DecisionOutcome | undefined> {
  const actor = { kind: "human" as const, id: input.userId };
  if (approval.status !== "pending") {
    await audit(deps.db, {
      taskId: approval.task_id,
      actor,
      kind: "approval_click_ignored",
      data: { approval_id: approval.id, status: approval.status, decision: input.decision },
    });
    return {
      outcome: "already_decided",
      status: approval.status,
      by: approval.decided_by,
      at: approval.decided_at,
    };
  }
  if (approval.expires_at.getTime() <= deps.clock.now().getTime()) {
    await expireApproval(deps, approval);
    return { outcome: "expired" };
  }
  const groups = await memberGroups(deps, input.userId, approval.approvers.groups);
  const check = mayDecide(
    input.userId,
    { requesterId: approval.requester_id, approvers: approval.approvers },
    groups,
  );
  if (check.ok) return undefined;
  await audit(deps.db, {
    taskId: approval.task_id,
    actor,
    kind: "approval_refused",
    data: { approval_id: approval.id, reason: check.reason, decision: input.decision },
  });
  return { outcome: "refused", reason: check.reason };
}

async function requireApproval(deps: RuntimeDeps, approvalId: string): Promise<ApprovalRow> {
  const approval = await humans.findApproval(deps.db, approvalId);
  if (!approval) throw new NotFoundError(`approval ${approvalId} does not exist`);
  return approval;
}

/**
 * Checks a click without deciding, for Reject: a person who may not decide is told so before a
 * modal asks them for a reason nobody would use. Undefined means: ask for the reason.
 */
export async function checkApprovalClick(
  deps: RuntimeDeps,
  input: ClickInput,
): Promise<DecisionOutcome | undefined> {
  return refusal(deps, await requireApproval(deps, input.approvalId), input);
}

/**
 * A human's click. Authorization is checked in code; the decision is taken once in SQL; the
 * tool itself runs later on the worker, with the approval as its idempotency key.
 */
export async function decideApproval(
  deps: RuntimeDeps,
  input: ClickInput & { reason?: string },
): Promise<DecisionOutcome> {
  const approval = await requireApproval(deps, input.approvalId);
  const refused = await refusal(deps, approval, input);
  if (refused) return refused;
  const reason = input.decision === "rejected" ? input.reason?.trim() || "no reason given" : null;
  const decided = await deps.db.transaction().execute(async (tx) => {
    const row = await humans.decideApproval(tx, approval.id, {
      status: input.decision,
      by: input.userId,
      reason,
      now: deps.clock.now(),
    });
    if (!row) return undefined;
    await resumeAfterDecision(deps, tx, row, { by: input.userId, reason });
    return row;
  });
  if (!decided) {
    // Another click decided between our check and our update: this one changes nothing, and
    // is audited like any click that came too late.
    const winner = await requireApproval(deps, approval.id);
    const late = await refusal(deps, winner, input);
    return late ?? { outcome: "already_decided", status: winner.status, by: null, at: null };
  }
  await deliverOutbox(deps, { taskId: approval.task_id });
  return { outcome: "decided", status: input.decision };
}

async function memberGroups(
  deps: RuntimeDeps,
  userId: string,
  groups: string[],
): Promise<string[]> {
  const found: string[] = [];
  for (const group of groups)
    if ((await deps.chat.groupMembers(group)).includes(userId)) found.push(group);
  return found;
}

/** The decision is recorded, the card updated in place and the task queued to carry on. */
async function resumeAfterDecision(
  deps: RuntimeDeps,
  tx: Parameters<typeof humans.decideApproval>[0],
  row: ApprovalRow,
  decision: { by: string | null; reason: string | null },
): Promise<void> {
  const task = await lockTask(tx, row.task_id);
  if (!task) return;
  const agent = deps.agents.persona(row.agent_id);
  const at = (row.decided_at ?? deps.clock.now()).toISOString();
  const state: ApprovalState =
    row.status === "approved"
      ? { status: "approved", by: decision.by ?? "", at }
      : row.status === "rejected"
        ? { status: "rejected", by: decision.by ?? "", at, reason: decision.reason ?? "" }
        : { status: "expired", at };
  await insertHandoff(tx, {
    taskId: task.id,
    stepNo: task.step_no,
    kind: "approval_decision",
    from: decision.by ? { kind: "human", id: decision.by } : { kind: "system", id: "baton" },
    to: { kind: "agent", id: row.agent_id },
    note: { approval_id: row.id, decision: row.status, reason: decision.reason },
  });
  if (task.status === "waiting_human" && task.owner_kind === "agent")
    await updateTask(tx, task.id, { status: "active" });
  await audit(tx, {
    taskId: task.id,
    actor: decision.by ? { kind: "human", id: decision.by } : { kind: "system", id: "baton" },
    kind: "approval_decided",
    data: {
      approval_id: row.id,
      decision: row.status,
      reason: decision.reason,
      tool: row.tool,
      args: row.args,
    },
  });
  await enqueueOutbox(tx, [
    cardUpdate(
      task,
      approvalIntent(task, agent, {
        id: row.id,
        tool: row.tool,
        args: row.args,
        approvers: row.approvers,
        expiresAt: row.expires_at,
        state,
        updateTs: row.card_ts,
      }),
      { table: "approvals", id: row.id },
    ),
  ]);
  await deps.queue.enqueue(tx, task.id);
}

export async function expireApproval(deps: RuntimeDeps, approval: ApprovalRow): Promise<void> {
  await deps.db.transaction().execute(async (tx) => {
    const row = await humans.decideApproval(tx, approval.id, {
      status: "expired",
      by: null,
      reason: "expired without a decision",
      now: deps.clock.now(),
    });
    if (row)
      await resumeAfterDecision(deps, tx, row, { by: null, reason: "expired without a decision" });
  });
  await deliverOutbox(deps, { taskId: approval.task_id });
}
