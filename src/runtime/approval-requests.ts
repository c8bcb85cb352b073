// A gated tool call parked for a person: its approval row, the card they click, the task waiting
// on them. The click's side is approvals.ts.
import type { Askers, Gate } from "../core/policy.ts";
import { argumentNames } from "../core/tools/builtin.ts";
import { type ToolDefinition, toolWords } from "../core/tools/tool.ts";
import { whoAsked } from "../db/approval-askers.repository.ts";
import * as approvalsDb from "../db/approvals.repository.ts";
import { type AuditInput, insertHandoff } from "../db/ledger.repository.ts";
import { approvalIntent } from "./approval-deadline.ts";
import { decisionPlace } from "./decision-place.ts";
import type { AgentEffects } from "./effects.ts";
import { post } from "./messages.ts";

type ApprovalGate = Extract<Gate, { kind: "approval" }>;
type People = { users: string[]; groups: string[] };
type GatedCall = {
  callId: string;
  key: string;
  tool: ToolDefinition;
  args: unknown;
  gate: ApprovalGate;
};

/** The call as parked: what its handoff, card and audit line each name. */
type Parked = {
  id: string;
  tool: ToolDefinition;
  args: Record<string, unknown>;
  gate: ApprovalGate;
  approvers: People;
  askers: Askers;
  expiresAt: Date;
};

/** Parks a gated call: a row to decide, a card to click, the task waiting on a human. */
export async function requestApproval(fx: AgentEffects, call: GatedCall): Promise<void> {
  const args = call.args as Record<string, unknown>;
  const approvers = copyOf(call.gate.approvers);
  // The deadline is the database's (see approvals.repository.ts): the card and audit show it as set.
  const { id, expires_at: expiresAt } = await approvalsDb.insertApproval(
    fx.tx,
    approvalRow(fx, call, args, approvers),
  );
  // The work may have passed through people since the task began: the card names whoever asked.
  const askers = await whoAsked(fx.tx, id);
  const parked = { id, tool: call.tool, args, gate: call.gate, approvers, askers, expiresAt };
  await handToApprovers(fx, parked);
  postApprovalCard(fx, parked);
  fx.audits.push(requestedAudit(fx, parked));
}

function approvalRow(
  fx: AgentEffects,
  call: GatedCall,
  args: Record<string, unknown>,
  approvers: People,
): Parameters<typeof approvalsDb.insertApproval>[1] {
  const { gate } = call;
  return {
    taskId: fx.task.id,
    stepNo: fx.stepNo,
    toolCallId: call.key,
    modelCallId: call.callId,
    agentId: fx.agent.id,
    tool: call.tool.name,
    args,
    policyId: gate.policyId,
    requesterId: fx.task.requester_id,
    approvers,
    fallback: gate.fallback && copyOf(gate.fallback),
    expiresInMs: gate.expiresAfterMs,
    why: gate.why,
  };
}

/** The task waits on the people asked, with a handoff to them in its history. */
async function handToApprovers(fx: AgentEffects, parked: Parked): Promise<void> {
  const { users, groups } = parked.approvers;
  Object.assign(fx.changes, { status: "waiting_human" });
  await insertHandoff(fx.tx, {
    taskId: fx.task.id,
    stepNo: fx.stepNo,
    kind: "approval_request",
    from: { kind: "agent", id: fx.agent.id },
    to: { kind: "human", id: [...users, ...groups].join(",") },
    note: callNote(parked),
  });
}

function postApprovalCard(fx: AgentEffects, parked: Parked): void {
  const { task, agent } = fx;
  const place = decisionPlace(fx.deps.agents.file, task);
  const card = approvalIntent(agent, place, {
    id: parked.id,
    tool: parked.tool.name,
    args: parked.args,
    argOrder: argumentNames(parked.tool),
    askers: parked.askers,
    approvers: parked.approvers,
    expiresAt: parked.expiresAt,
    why: parked.gate.why,
    state: { status: "pending" },
  });
  fx.outbox.push(post(task, card, { table: "approvals", id: parked.id }));
  // Asked in a direct message, the card went where its deciders are: the requester is told here.
  if (place.channel !== task.channel_id)
    fx.outbox.push(
      post(task, {
        kind: "notice",
        channel: task.channel_id,
        threadTs: task.thread_ts,
        text: `⏳ ${agent.name} needs a person's approval to ${toolWords(parked.tool)} first; you will hear back here.`,
      }),
    );
}

function requestedAudit(fx: AgentEffects, parked: Parked): AuditInput {
  const { askers } = parked;
  return {
    taskId: fx.task.id,
    actor: { kind: "agent", id: fx.agent.id },
    kind: "approval_requested",
    data: {
      ...callNote(parked),
      approvers: parked.approvers,
      asked_by: {
        requester: askers.requester,
        handed_on_by: askers.handedOnBy,
        in_thread: askers.inThread,
      },
      expires_at: parked.expiresAt.toISOString(),
    },
  };
}

/** The call as its handoff note and its audit line both name it. */
function callNote(parked: Parked): Record<string, unknown> {
  const { gate } = parked;
  return {
    approval_id: parked.id,
    tool: parked.tool.name,
    args: parked.args,
    policy: gate.policyId,
    ...(gate.why && { why: gate.why }),
  };
}

function copyOf(people: People): People {
  return { users: [...people.users], groups: [...people.groups] };
}
