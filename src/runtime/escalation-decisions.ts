// A person's decision on an escalation card: take the work over, send it back to an agent, or hand
// on what they took over.
import { renderHumanReturn, renderRequest, renderSentBack } from "../core/context.ts";
import type { ChatMessage } from "../core/model.ts";
import type { Tx } from "../db/database.ts";
import * as escalationsDb from "../db/escalations.repository.ts";
import { appendConversation, audit, insertHandoff } from "../db/ledger.repository.ts";
import { enqueueOutbox } from "../db/outbox.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import { lockTask, updateTask } from "../db/tasks.repository.ts";
import { takeUnreadInputs } from "../db/turn-reads.repository.ts";
import { NotFoundError, PolicyDeniedError } from "../errors.ts";
import type { RuntimeDeps } from "./deps.ts";
import { type EscalationRow, escalationCardUpdate, requesterNotice } from "./escalation-cards.ts";
import { checkAgainst, type EscalationCheck, holds } from "./escalation-checks.ts";
import type { Clicker } from "./escalation-owners.ts";
import { replyMessage } from "./messages.ts";
import { deliverOutbox } from "./outbox.ts";

export type EscalationChoice =
  | { kind: "take_over" }
  | { kind: "send_back"; agentId: string; instruction: string };

type DecideInput = { escalationId: string; choice: EscalationChoice } & Clicker;
type DecidedRow = NonNullable<Awaited<ReturnType<typeof escalationsDb.decideEscalation>>>;

/** The owner takes the work over, or sends it back to an agent with an instruction. Decided once. */
export async function decideEscalation(
  deps: RuntimeDeps,
  input: DecideInput,
): Promise<{ outcome: "decided" } | Exclude<EscalationCheck, { outcome: "ok" }>> {
  const escalation = await escalationsDb.findEscalation(deps.db, input.escalationId);
  if (!escalation) throw new NotFoundError(`escalation ${input.escalationId} does not exist`);
  const check = await checkAgainst(deps, escalation, input, input.choice.kind);
  if (check.outcome !== "ok") return check;
  if (input.choice.kind === "send_back" && !deps.agents.get(input.choice.agentId)) {
    throw new PolicyDeniedError(`there is no agent "${input.choice.agentId}"`);
  }
  const held = escalation.status === "taken_over";
  const outcome = await deps.db
    .transaction()
    .execute((tx) => decideOnce(deps, tx, escalation, input, held));
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
      byClicker: winner?.decided_by != null && winner.decided_by === input.userId,
    };
  }
  deps.afterwards.run("update the escalation card", () =>
    deliverOutbox(deps, { taskId: outcome.taskId }),
  );
  return { outcome: "decided" as const };
}

/**
 * The decision, taken once on the row as checked (`held`: taken over, and handed on now by the
 * person who holds it), its task's new owner, its card and its requester told. Undefined when the
 * row or the task moved on since the check.
 */
async function decideOnce(
  deps: RuntimeDeps,
  tx: Tx,
  escalation: EscalationRow,
  input: DecideInput,
  held: boolean,
): Promise<{ taskId: string } | undefined> {
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
  await handOn(deps, tx, task, row, input);
  await enqueueOutbox(tx, [
    escalationCardUpdate(deps, task, row, decidedState(deps, row, input)),
    ...requesterNotice(deps, task, row, input.userId, input.choice),
  ]);
  await audit(tx, {
    taskId: task.id,
    actor: { kind: "human", id: input.userId },
    kind: "escalation_decided",
    data: { escalation_id: row.id, choice: input.choice },
  });
  return { taskId: task.id };
}

/** The task to the person who took it over, or to the agent they sent it back to. */
async function handOn(
  deps: RuntimeDeps,
  tx: Tx,
  task: TaskRow,
  row: DecidedRow,
  { userId, choice }: DecideInput,
): Promise<void> {
  if (choice.kind === "send_back") {
    const agent = deps.agents.require(choice.agentId);
    await returnToAgent(deps, tx, task, { userId, agent, instruction: choice.instruction });
    return;
  }
  await insertHandoff(tx, {
    taskId: task.id,
    stepNo: task.step_no,
    kind: "take_over",
    from: { kind: "human", id: row.owner.id },
    to: { kind: "human", id: userId },
    note: {},
  });
  await updateTask(tx, task.id, { owner: { kind: "human", id: userId }, status: "waiting_human" });
}

function decidedState(deps: RuntimeDeps, row: DecidedRow, { userId, choice }: DecideInput) {
  const at = row.decided_at.toISOString();
  if (choice.kind === "take_over") return { status: "taken_over" as const, by: userId, at };
  return {
    status: "sent_back" as const,
    by: userId,
    at,
    toName: deps.agents.require(choice.agentId).name,
    instruction: choice.instruction,
  };
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
  const opening = sentBackOpening(task, input, await takeUnreadInputs(tx, task.id, task.step_no));
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
 * Replies that came while the work waited on people (the requester's, the holder's own) were
 * written before the instruction: the agent reads them in that order, so the person's instruction,
 * not an older reply, is the last word. Without any, the stint opens with one message, as before.
 */
function sentBackOpening(
  task: TaskRow,
  input: { userId: string; instruction: string },
  replies: Awaited<ReturnType<typeof takeUnreadInputs>>,
): ChatMessage[] {
  if (replies.length === 0)
    return [
      {
        role: "user",
        content: renderHumanReturn(input.userId, input.instruction, task.request_text),
      },
    ];
  return [
    { role: "user", content: renderRequest(task.request_text) },
    ...replies.map((reply) => replyMessage(reply, task.requester_id)),
    { role: "user", content: renderSentBack(input.userId, input.instruction) },
  ];
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
