// A person's decision on an escalation card: take the work over, send it back to an agent, or hand
// on what they took over.
import { renderHumanReturn, renderRequest, renderSentBack } from "../core/context.ts";
import type { ChatMessage } from "../core/model.ts";
import type { Tx } from "../db/database.ts";
import * as escalationsDb from "../db/escalations.repository.ts";
import { appendConversation, audit, insertHandoff } from "../db/ledger.repository.ts";
import { enqueueOutbox } from "../db/outbox.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import { findTask, lockTask, updateTask } from "../db/tasks.repository.ts";
import { takeUnreadInputs } from "../db/turn-reads.repository.ts";
import { NotFoundError, PolicyDeniedError } from "../errors.ts";
import type { RuntimeDeps } from "./deps.ts";
import { type EscalationRow, escalationCardUpdate, requesterNotice } from "./escalation-cards.ts";
import { fallbackBeside, mayDecide } from "./escalation-owners.ts";
import { replyMessage } from "./messages.ts";
import { deliverOutbox } from "./outbox.ts";

export type EscalationChoice =
  | { kind: "take_over" }
  | { kind: "send_back"; agentId: string; instruction: string };

/** The owner takes the work over, or sends it back to an agent with an instruction. Decided once. */
export type EscalationCheck =
  | { outcome: "ok" }
  | { outcome: "already_decided"; by: string | null; status: string }
  | { outcome: "refused"; owner: Owned; fallback: string[]; reason?: "own_request" };

type Owned = { kind: string; id: string };

/**
 * Whether this person may send the work to an agent (asked before the send-back modal opens): while
 * the escalation is open, its owner (the named person, a member of the named group, or anyone in
 * the lane's channel) or its fallback, but never the person who asked for the work (as with
 * approvals); once taken over, the person who took it, until they mark it done. Refusals are audited.
 */
export async function checkEscalationClick(
  deps: RuntimeDeps,
  input: { escalationId: string; userId: string },
): Promise<EscalationCheck> {
  const escalation = await escalationsDb.findEscalation(deps.db, input.escalationId);
  if (!escalation) throw new NotFoundError(`escalation ${input.escalationId} does not exist`);
  return checkAgainst(deps, escalation, input.userId, "send_back");
}

async function checkAgainst(
  deps: RuntimeDeps,
  escalation: EscalationRow,
  userId: string,
  choice: EscalationChoice["kind"],
): Promise<EscalationCheck> {
  if (escalation.status === "taken_over" && choice === "send_back")
    return checkHolder(deps, escalation, userId);
  if (escalation.status !== "open") {
    return { outcome: "already_decided", by: escalation.decided_by, status: escalation.status };
  }
  const { owner } = escalation;
  const task = await findTask(deps.db, escalation.task_id);
  const ownRequest = task?.requester_id === userId;
  if (!ownRequest && (await mayDecide(deps, escalation, userId))) return { outcome: "ok" };
  await audit(deps.db, {
    taskId: escalation.task_id,
    actor: { kind: "human", id: userId },
    kind: "escalation_refused",
    data: { escalation_id: escalation.id, owner, ...(ownRequest && { reason: "own_request" }) },
  });
  const fallback = fallbackBeside(escalation);
  return { outcome: "refused", owner, fallback, ...(ownRequest && { reason: "own_request" }) };
}

/**
 * The person who took the work over may still hand it to an agent: while they hold the task and
 * have not marked it done. Anyone else is told who has it.
 */
async function checkHolder(
  deps: RuntimeDeps,
  escalation: EscalationRow,
  userId: string,
): Promise<EscalationCheck> {
  const task = await findTask(deps.db, escalation.task_id);
  if (escalation.decided_by === userId && holds(task, userId)) return { outcome: "ok" };
  // "held": someone else took it over; "done": it was closed; else it moved on some other way.
  const status =
    task?.status === "done"
      ? "done"
      : escalation.decided_by !== userId
        ? "held"
        : escalation.status;
  return { outcome: "already_decided", by: escalation.decided_by, status };
}

function holds(
  task: { owner_kind: string; owner_id: string; status: string } | undefined,
  userId: string,
) {
  return (
    task?.owner_kind === "human" && task.owner_id === userId && task.status === "waiting_human"
  );
}

export async function decideEscalation(
  deps: RuntimeDeps,
  input: { escalationId: string; userId: string; choice: EscalationChoice },
) {
  const escalation = await escalationsDb.findEscalation(deps.db, input.escalationId);
  if (!escalation) throw new NotFoundError(`escalation ${input.escalationId} does not exist`);
  const check = await checkAgainst(deps, escalation, input.userId, input.choice.kind);
  if (check.outcome !== "ok") return check;
  if (input.choice.kind === "send_back" && !deps.agents.get(input.choice.agentId)) {
    throw new PolicyDeniedError(`there is no agent "${input.choice.agentId}"`);
  }
  const held = escalation.status === "taken_over";
  const outcome = await deps.db.transaction().execute(async (tx) => {
    // Handing on taken-over work: the person must still hold the task (not closed it meanwhile).
    if (held && !holds(await lockTask(tx, escalation.task_id), input.userId)) return undefined;
    const row = await escalationsDb.decideEscalation(tx, escalation.id, {
      status: input.choice.kind === "take_over" ? "taken_over" : "sent_back",
      by: input.userId,
      decision: input.choice,
      checked: held
        ? { status: "taken_over", by: input.userId }
        : { status: "open", owner: escalation.owner },
    });
    if (!row) return undefined;
    const task = await lockTask(tx, row.task_id);
    if (!task) return undefined;
    const at = row.decided_at.toISOString();
    const choice = input.choice;
    if (choice.kind === "take_over") {
      await insertHandoff(tx, {
        taskId: task.id,
        stepNo: task.step_no,
        kind: "take_over",
        from: { kind: "human", id: row.owner.id },
        to: { kind: "human", id: input.userId },
        note: {},
      });
      await updateTask(tx, task.id, {
        owner: { kind: "human", id: input.userId },
        status: "waiting_human",
      });
    } else {
      const agent = deps.agents.require(choice.agentId);
      await returnToAgent(deps, tx, task, {
        userId: input.userId,
        agent,
        instruction: choice.instruction,
      });
    }
    const state =
      choice.kind === "take_over"
        ? { status: "taken_over" as const, by: input.userId, at }
        : {
            status: "sent_back" as const,
            by: input.userId,
            at,
            toName: deps.agents.require(choice.agentId).name,
            instruction: choice.instruction,
          };
    await enqueueOutbox(tx, [
      escalationCardUpdate(deps, task, row, state),
      ...requesterNotice(deps, task, row, input.userId, choice),
    ]);
    await audit(tx, {
      taskId: task.id,
      actor: { kind: "human", id: input.userId },
      kind: "escalation_decided",
      data: { escalation_id: row.id, choice },
    });
    return { taskId: task.id };
  });
  if (!outcome) {
    const winner = await escalationsDb.findEscalation(deps.db, escalation.id);
    // Still open: the sweep handed it to another owner after the check; check again against them.
    // Still taken over: the task changed since the check (closed); the check says so now.
    if (winner?.status === "open" || (held && winner?.status === "taken_over"))
      return decideEscalation(deps, input);
    return {
      outcome: "already_decided" as const,
      by: winner?.decided_by ?? null,
      status: winner?.status ?? "decided",
    };
  }
  deps.afterwards.run("update the escalation card", () =>
    deliverOutbox(deps, { taskId: outcome.taskId }),
  );
  return { outcome: "decided" as const };
}

/**
 * A person hands the task (on their desk) to an agent with an instruction: the agent starts a new
 * stint with it and the request, and the task's job is queued. The caller holds the task's lock.
 */
export async function returnToAgent(
  deps: RuntimeDeps,
  tx: Tx,
  task: TaskRow,
  input: { userId: string; agent: { id: string }; instruction: string },
): Promise<void> {
  await insertHandoff(tx, {
    taskId: task.id,
    stepNo: task.step_no,
    kind: "human_return",
    from: { kind: "human", id: input.userId },
    to: { kind: "agent", id: input.agent.id },
    note: { instruction: input.instruction },
  });
  // Replies that came while the work waited on people (the requester's, the holder's own) were
  // written before the instruction: the agent reads them in that order, so the person's instruction,
  // not an older reply, is the last word. Without any, the stint opens with one message, as before.
  const replies = await takeUnreadInputs(tx, task.id, task.step_no);
  const opening: ChatMessage[] =
    replies.length === 0
      ? [
          {
            role: "user",
            content: renderHumanReturn(input.userId, input.instruction, task.request_text),
          },
        ]
      : [
          { role: "user", content: renderRequest(task.request_text) },
          ...replies.map((reply) => replyMessage(reply, task.requester_id)),
          { role: "user", content: renderSentBack(input.userId, input.instruction) },
        ];
  await appendConversation(
    tx,
    opening.map((message) => ({
      taskId: task.id,
      stintNo: task.stint_no + 1,
      stepNo: task.step_no,
      message,
    })),
  );
  await updateTask(tx, task.id, {
    owner: { kind: "agent", id: input.agent.id },
    status: "active",
    newStint: true,
    handbackStack: [],
    hopsAfresh: true,
  });
  await deps.queue.enqueue(tx, task.id);
}

/**
 * The person who took an escalation over handed its work to an agent from the thread
 * ("@Baton billing: …"): the escalation is decided as if sent back from its card, and the card
 * says so. Nothing when no escalation of the task is theirs.
 */
export async function sendBackTakenOver(
  deps: RuntimeDeps,
  tx: Tx,
  task: TaskRow,
  input: { userId: string; agent: { id: string; name: string }; instruction: string },
): Promise<void> {
  const row = await escalationsDb.takenOverEscalation(tx, task.id);
  if (row?.decided_by !== input.userId) return;
  const choice = {
    kind: "send_back" as const,
    agentId: input.agent.id,
    instruction: input.instruction,
  };
  const decided = await escalationsDb.decideEscalation(tx, row.id, {
    status: "sent_back",
    by: input.userId,
    decision: choice,
    checked: { status: "taken_over", by: input.userId },
  });
  if (!decided) return;
  await enqueueOutbox(tx, [
    escalationCardUpdate(deps, task, decided, {
      status: "sent_back",
      by: input.userId,
      at: decided.decided_at.toISOString(),
      toName: input.agent.name,
      instruction: input.instruction,
    }),
    ...requesterNotice(deps, task, decided, input.userId, choice),
  ]);
  await audit(tx, {
    taskId: task.id,
    actor: { kind: "human", id: input.userId },
    kind: "escalation_decided",
    data: { escalation_id: row.id, choice, from: "thread" },
  });
}
