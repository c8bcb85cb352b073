import type { Askers } from "../core/policy.ts";
import { argumentNames } from "../core/tools/builtin.ts";
import { whoAsked } from "../db/approval-askers.repository.ts";
import * as approvalsDb from "../db/approvals.repository.ts";
import type { Executor } from "../db/database.ts";
import { audit, insertHandoff } from "../db/ledger.repository.ts";
import { enqueueOutbox, type OutboxMessage } from "../db/outbox.repository.ts";
import type { ApprovalRow, TaskRow } from "../db/schema.ts";
import { lockTask, updateTask } from "../db/tasks.repository.ts";
import { decisionPlace } from "./decision-place.ts";
import type { RuntimeDeps } from "./deps.ts";
import { cardUpdate, personaOf, post } from "./messages.ts";
import { deliverOutbox } from "./outbox.ts";

/**
 * An approval's card, how a decision resumes its task, and what its deadline does. Both the
 * maintenance sweep (deadlines.ts) and a click (approvals.ts) use these, so neither imports the
 * other.
 */

type People = { users: string[]; groups: string[] };

export const mentionOf = (id: string) => (id.startsWith("S") ? `<!subteam^${id}>` : `<@${id}>`);

export type ApprovalState =
  | { status: "pending" }
  | { status: "approved"; by: string; at: string; notRun?: boolean }
  | { status: "rejected"; by: string; at: string; reason: string }
  | { status: "expired"; at: string }
  | { status: "withdrawn"; at: string }
  | { status: "cancelled"; at: string; why: string }
  | { status: "escalated"; to: string; at: string };

export function approvalIntent(
  agent: { name: string; icon: string },
  place: { channel: string; threadTs?: string },
  a: {
    id: string;
    tool: string;
    args: Record<string, unknown>;
    /** The tool's argument names (`argumentNames`): every card of the call lists them so. */
    argOrder: string[];
    askers: Askers;
    approvers: People;
    expiresAt: Date;
    /** Why the call waits, when its arguments alone do not say (the approval's `why`). */
    why?: string | null | undefined;
    state: ApprovalState;
    updateTs?: string | null;
  },
) {
  return {
    kind: "approval_card" as const,
    channel: place.channel,
    ...(place.threadTs && { threadTs: place.threadTs }),
    persona: personaOf(agent),
    ...(a.updateTs ? { updateTs: a.updateTs } : {}),
    approval: {
      approvalId: a.id,
      agentName: agent.name,
      toolName: a.tool,
      args: a.args,
      argOrder: a.argOrder,
      ...(a.why && { reason: a.why }),
      requesterId: a.askers.requester,
      handedOnBy: a.askers.handedOnBy,
      askedInThread: a.askers.inThread,
      approvers: a.approvers,
      expiresAt: a.expiresAt.toISOString(),
      state: a.state,
    },
  };
}

/**
 * What a missed deadline does to a pending approval: it goes to its fallback if it has one not
 * yet used, else it expires (the agent is told). Judged on the row as it is now, against the
 * database's time now (every replica's one clock), because another replica may have moved it
 * since the caller looked; the updates check the same in SQL. Returns what this call did, if
 * anything.
 */
export async function enforceApprovalDeadline(
  deps: RuntimeDeps,
  approvalId: string,
): Promise<"escalated" | "expired" | undefined> {
  const approval = await approvalsDb.findApproval(deps.db, approvalId);
  if (approval?.status !== "pending" || !approval.past_deadline) return undefined;
  const fallback = fallbackNow(deps, approval);
  if (fallback && !approval.escalated_at)
    return (await escalateApproval(deps, approval, fallback)) ? "escalated" : undefined;
  return (await expireApproval(deps, approval)) ? "expired" : undefined;
}

/**
 * The fallback of the approval's policy in the agents file in use: a person taken out of it since
 * the call was parked (offboarded) is not given a card they may not decide (see `namedNow`). The
 * one stored at parking when the file has no such policy any more.
 */
function fallbackNow(deps: RuntimeDeps, approval: ApprovalRow): People | null {
  const policy = deps.agents.file.policies.approvals.find((p) => p.id === approval.policy_id);
  return policy ? (policy.fallback ?? null) : approval.fallback;
}

async function expireApproval(deps: RuntimeDeps, approval: ApprovalRow) {
  const expired = await settleUndecided(deps, approval.id, "expired", "expired without a decision");
  await deliverOutbox(deps, { taskId: approval.task_id });
  return expired;
}

/**
 * Settles a waiting approval nobody decided (it expired, or the agents file no longer runs its
 * call) by the claim a click takes, and resumes its task the same way. True when this call settled
 * it; a click or another replica that took the row first leaves it to them.
 */
export async function settleUndecided(
  deps: RuntimeDeps,
  approvalId: string,
  status: "expired" | "cancelled",
  reason: string,
): Promise<boolean> {
  return deps.db.transaction().execute(async (tx) => {
    const row = await approvalsDb.decideApproval(tx, approvalId, { status, by: null, reason });
    if (row) await resumeAfterDecision(deps, tx, row, { by: null, reason });
    return row !== undefined;
  });
}

/** The fallback gets a fresh card and a deadline as long as the first (a minute at least). */
async function escalateApproval(
  deps: RuntimeDeps,
  approval: ApprovalRow,
  fallback: People,
): Promise<boolean> {
  const escalated = await deps.db.transaction().execute(async (tx) => {
    const row = await approvalsDb.markApprovalEscalated(tx, approval.id, fallback);
    if (!row) return false;
    const task = await lockTask(tx, row.task_id);
    if (!task) return true;
    await insertHandoff(tx, {
      taskId: task.id,
      stepNo: task.step_no,
      kind: "approval_escalated",
      from: {
        kind: "human",
        id: [...approval.approvers.users, ...approval.approvers.groups].join(","),
      },
      to: { kind: "human", id: [...fallback.users, ...fallback.groups].join(",") },
      note: { approval_id: row.id, reason: "no decision before the deadline" },
    });
    const askers = await whoAsked(tx, row.id);
    await enqueueOutbox(tx, escalatedCards(deps, { task, row, approval, fallback, askers }));
    await audit(tx, {
      taskId: task.id,
      actor: { kind: "system", id: "baton" },
      kind: "approval_escalated",
      data: { approval_id: row.id, tool: row.tool, to: fallback },
    });
    return true;
  });
  await deliverOutbox(deps, { taskId: approval.task_id });
  return escalated;
}

/** The first card marked escalated, a page for the fallback, and the fallback's own card. */
function escalatedCards(
  deps: RuntimeDeps,
  escalated: {
    task: TaskRow;
    row: ApprovalRow;
    approval: ApprovalRow;
    fallback: People;
    askers: Awaited<ReturnType<typeof whoAsked>>;
  },
): OutboxMessage[] {
  const { task, row, approval, fallback, askers } = escalated;
  const agent = deps.agents.persona(row.agent_id);
  // Where the card is: in a direct message's task, the fallback people could not see it.
  const place = decisionPlace(deps.agents.file, task);
  const base = {
    id: row.id,
    tool: row.tool,
    args: row.args,
    argOrder: argumentNames(deps.tools.get(row.tool)),
    why: row.why,
    askers,
    expiresAt: row.expires_at,
  };
  // All of them: the new card goes to every one, so the old one names every one.
  const people = [...fallback.users, ...fallback.groups];
  const at = (row.escalated_at ?? row.expires_at).toISOString();
  const ref = { table: "approvals" as const, id: row.id };
  return [
    cardUpdate(
      task,
      approvalIntent(agent, place, {
        ...base,
        approvers: approval.approvers,
        state: { status: "escalated", to: people.join(","), at },
        updateTs: approval.card_ts,
      }),
      ref,
    ),
    post(task, {
      kind: "notice",
      ...place,
      // Slack pings only the mentions a notice starts with (the rest is escaped): lead with them.
      text: `${people.map(mentionOf).join(" ")} ⏰ Nobody decided on ${row.tool} in time, so it is yours now.`,
    }),
    post(
      task,
      approvalIntent(agent, place, { ...base, approvers: fallback, state: { status: "pending" } }),
      ref,
    ),
  ];
}

/**
 * The decision (a person's, an expiry, or a cancellation: see cancelled-approvals.ts) is recorded,
 * the card updated in place and the task queued to carry on.
 */
export async function resumeAfterDecision(
  deps: RuntimeDeps,
  tx: Parameters<typeof approvalsDb.decideApproval>[0],
  row: ApprovalRow & { decided_at: Date },
  decision: { by: string | null; reason: string | null },
): Promise<void> {
  const task = await lockTask(tx, row.task_id);
  if (!task) return;
  const at = row.decided_at.toISOString();
  const state: ApprovalState =
    row.status === "approved"
      ? { status: "approved", by: decision.by ?? "", at }
      : row.status === "rejected"
        ? { status: "rejected", by: decision.by ?? "", at, reason: decision.reason ?? "" }
        : row.status === "cancelled"
          ? { status: "cancelled", at, why: decision.reason ?? "" }
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
  await enqueueOutbox(tx, [await approvalCardUpdate(deps, tx, task, row, state)]);
  await deps.queue.enqueue(tx, task.id);
}

/** What an approval card is built from: its row as stored. */
type ApprovalCardRow = Pick<
  ApprovalRow,
  "id" | "agent_id" | "tool" | "args" | "why" | "approvers" | "expires_at"
>;

/**
 * The update of an approval's card to `state`, where its task decides (the ts is read when the
 * update goes out: an approval given to its fallback has a newer card, whose post goes out before
 * this and whose ts may not be saved yet).
 */
export async function approvalCardUpdate(
  deps: RuntimeDeps,
  tx: Executor,
  task: TaskRow,
  row: ApprovalCardRow,
  state: ApprovalState,
): Promise<OutboxMessage> {
  const intent = approvalIntent(
    deps.agents.persona(row.agent_id),
    decisionPlace(deps.agents.file, task),
    {
      id: row.id,
      tool: row.tool,
      args: row.args,
      argOrder: argumentNames(deps.tools.get(row.tool)),
      why: row.why,
      askers: await whoAsked(tx, row.id),
      approvers: row.approvers,
      expiresAt: row.expires_at,
      state,
    },
  );
  return cardUpdate(task, intent, { table: "approvals", id: row.id });
}
