// Whether a person's click may decide an escalation: while it is open, its owner or fallback (never
// the person who asked for the work); once taken over, the person who holds it.
import * as escalationsDb from "../db/escalations.repository.ts";
import { audit } from "../db/ledger.repository.ts";
import { findTask } from "../db/tasks.repository.ts";
import { NotFoundError } from "../errors.ts";
import type { RuntimeDeps } from "./deps.ts";
import type { EscalationRow } from "./escalation-cards.ts";
import type { EscalationChoice } from "./escalation-decisions.ts";
import {
  type Clicker,
  fallbackBeside,
  laneNamedNow,
  mayDecide,
  stillNamed,
} from "./escalation-owners.ts";
import { fromOutside } from "./organization.ts";

export type EscalationCheck =
  | { outcome: "ok" }
  /** `byClicker`: the decision was the clicker's own (their second click). */
  | { outcome: "already_decided"; by: string | null; status: string; byClicker: boolean }
  | {
      outcome: "refused";
      owner: Owned;
      fallback: string[];
      reason?: RefusalReason;
      /** Baton's organization's name, when Slack gave one: who a channel's lane is for. */
      organization?: string;
      /** For `no_longer_named`: the card's people the agents file in use still names. */
      stillNamed?: string[];
    };

type Owned = { kind: string; id: string };
/**
 * Why a person who might own the work by the card's rules may not: they asked for it, they are
 * of another organization (a channel's lane is its members' of Baton's own organization), or the
 * agents file in use no longer names them for the lane.
 */
type RefusalReason = "own_request" | "outside_organization" | "no_longer_named";

/**
 * Whether this person may send the work to an agent (asked before the send-back modal opens): while
 * the escalation is open, its owner (the named person, a member of the named group, or anyone of
 * Baton's organization in the lane's channel) or its fallback, but never the person who asked for the work (as with
 * approvals); once taken over, the person who took it, until they mark it done. Refusals are audited.
 */
export async function checkEscalationClick(
  deps: RuntimeDeps,
  input: { escalationId: string } & Clicker,
): Promise<EscalationCheck> {
  const escalation = await escalationsDb.findEscalation(deps.db, input.escalationId);
  if (!escalation) throw new NotFoundError(`escalation ${input.escalationId} does not exist`);
  return checkAgainst(deps, escalation, input, "send_back");
}

/** Judged on `escalation` as read: the decision itself checks the row again, in SQL. */
export async function checkAgainst(
  deps: RuntimeDeps,
  escalation: EscalationRow,
  clicker: Clicker,
  choice: EscalationChoice["kind"],
): Promise<EscalationCheck> {
  const { userId } = clicker;
  if (escalation.status === "taken_over" && choice === "send_back")
    return checkHolder(deps, escalation, userId);
  if (escalation.status !== "open") {
    const by = escalation.decided_by;
    return { outcome: "already_decided", by, status: escalation.status, byClicker: by === userId };
  }
  const task = await findTask(deps.db, escalation.task_id);
  const ownRequest = task?.requester_id === userId;
  if (!ownRequest && (await mayDecide(deps, escalation, clicker)))
    return (await stillNamed(deps, escalation, userId))
      ? { outcome: "ok" }
      : refuse(deps, escalation, clicker, "no_longer_named");
  const reason = ownRequest ? "own_request" : await outsiderReason(deps, escalation, clicker);
  return refuse(deps, escalation, clicker, reason);
}

/** A refused click, audited (with why, when there is more to it than not being an owner). */
async function refuse(
  deps: RuntimeDeps,
  escalation: EscalationRow,
  clicker: Clicker,
  reason: RefusalReason | undefined,
): Promise<EscalationCheck> {
  const { owner } = escalation;
  const outside = reason === "outside_organization";
  await audit(deps.db, {
    taskId: escalation.task_id,
    actor: { kind: "human", id: clicker.userId },
    kind: "escalation_refused",
    data: {
      escalation_id: escalation.id,
      owner,
      ...(reason && { reason }),
      ...(outside && { team_id: clicker.teamId }),
    },
  });
  const organization = outside ? (await deps.chat.ownOrganization())?.name : undefined;
  return {
    outcome: "refused",
    owner,
    fallback: fallbackBeside(escalation),
    ...(reason && { reason }),
    ...(organization && { organization }),
    ...(reason === "no_longer_named" && { stillNamed: namedOnCard(deps, escalation) }),
  };
}

/** Of the people and groups the card names, those the agents file in use names for its lane. */
function namedOnCard(deps: RuntimeDeps, escalation: EscalationRow): string[] {
  const now = laneNamedNow(deps, escalation) ?? [];
  const { owner } = escalation;
  const card = owner.kind === "channel" ? [] : owner.id.split(",");
  return [...new Set([...card, ...fallbackBeside(escalation)])].filter((id) => now.includes(id));
}

/**
 * "outside_organization" when the lane is a channel's and the clicker is of another organization:
 * they are told that, not that they are no member (they may well be one, in a shared channel).
 */
async function outsiderReason(
  deps: RuntimeDeps,
  escalation: EscalationRow,
  clicker: Clicker,
): Promise<RefusalReason | undefined> {
  if (escalation.owner.kind !== "channel") return undefined;
  return (await fromOutside(deps, clicker.teamId)) ? "outside_organization" : undefined;
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
