import type { findEscalation } from "../db/escalations.repository.ts";
import type { RuntimeDeps } from "./deps.ts";

type EscalationRow = NonNullable<Awaited<ReturnType<typeof findEscalation>>>;

/** Whether the person may decide an open escalation: its owner, or its fallback's people. */
export async function mayDecide(
  deps: RuntimeDeps,
  escalation: Pick<EscalationRow, "owner" | "fallback">,
  userId: string,
): Promise<boolean> {
  if (await owns(deps, escalation.owner, userId)) return true;
  const { fallback } = escalation;
  if (!fallback) return false;
  if (fallback.users.includes(userId)) return true;
  for (const group of fallback.groups)
    if ((await deps.chat.groupMembers(group)).includes(userId)) return true;
  return false;
}

/**
 * The fallback's people who may decide beside the owner, as a refusal names them: none once the
 * escalation moved to its fallback (they are its owner now), or when its lane names none.
 */
export function fallbackBeside(escalation: Pick<EscalationRow, "fallback" | "escalated_at">) {
  const { fallback } = escalation;
  return fallback && !escalation.escalated_at ? [...fallback.users, ...fallback.groups] : [];
}

/**
 * Whether the person is the escalation's owner: named, in a named group, or, for a lane owned by a
 * channel, a member of that channel (Slack's word: the card sits in the task's thread, which people
 * outside the lane's channel can see too).
 */
async function owns(
  deps: RuntimeDeps,
  owner: EscalationRow["owner"],
  userId: string,
): Promise<boolean> {
  if (owner.kind === "channel") return (await deps.chat.channelMembers(owner.id)).includes(userId);
  for (const id of owner.id.split(",")) {
    if (id === userId) return true;
    if (/^S[A-Z0-9]+$/.test(id) && (await deps.chat.groupMembers(id)).includes(userId)) return true;
  }
  return false;
}
