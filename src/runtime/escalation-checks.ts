// Whether a person's click may decide an escalation: while it is open, its owner or fallback (never
// the person who asked for the work); once taken over, the person who holds it.
import * as escalationsDb from "../db/escalations.repository.ts";
import { audit } from "../db/ledger.repository.ts";
import { findTask } from "../db/tasks.repository.ts";
import { NotFoundError } from "../errors.ts";
import type { RuntimeDeps } from "./deps.ts";
import type { EscalationRow } from "./escalation-cards.ts";
import type { EscalationChoice } from "./escalation-decisions.ts";
import { fallbackBeside, mayDecide } from "./escalation-owners.ts";

export type EscalationCheck =
  | { outcome: "ok" }
  /** `byClicker`: the decision was the clicker's own (their second click). */
  | { outcome: "already_decided"; by: string | null; status: string; byClicker: boolean }
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

/** Judged on `escalation` as read: the decision itself checks the row again, in SQL. */
export async function checkAgainst(
  deps: RuntimeDeps,
  escalation: EscalationRow,
  userId: string,
  choice: EscalationChoice["kind"],
): Promise<EscalationCheck> {
  if (escalation.status === "taken_over" && choice === "send_back")
    return checkHolder(deps, escalation, userId);
  if (escalation.status !== "open") {
    const by = escalation.decided_by;
    return { outcome: "already_decided", by, status: escalation.status, byClicker: by === userId };
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
  const by = escalation.decided_by;
  return { outcome: "already_decided", by, status, byClicker: by === userId };
}

export function holds(
  task: { owner_kind: string; owner_id: string; status: string } | undefined,
  userId: string,
) {
  return (
    task?.owner_kind === "human" && task.owner_id === userId && task.status === "waiting_human"
  );
}
