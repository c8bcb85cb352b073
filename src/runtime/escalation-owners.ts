import type { MemberLookupOptions } from "../core/ports.ts";
import type { RuntimeDeps } from "./deps.ts";
import type { EscalationRow } from "./escalation-cards.ts";
import { fromOutside } from "./organization.ts";

/** A person who clicked: their id and, when Slack said, their own team (`user.team_id`). */
export interface Clicker {
  userId: string;
  teamId?: string | undefined;
}

/** Whether the person may decide an open escalation: its owner, or its fallback's people. */
export async function mayDecide(
  deps: RuntimeDeps,
  escalation: Pick<EscalationRow, "owner" | "fallback">,
  clicker: Clicker,
): Promise<boolean> {
  if (await owns(deps, escalation.owner, clicker)) return true;
  const { fallback } = escalation;
  return (
    fallback !== null && isAmong(deps, [...fallback.users, ...fallback.groups], clicker.userId)
  );
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
 * outside the lane's channel can see too). Only Baton's own organization's members count: a
 * channel shared with another (Slack Connect) has its people as members too. People the operator
 * named are owners whatever their organization.
 */
async function owns(
  deps: RuntimeDeps,
  owner: EscalationRow["owner"],
  { userId, teamId }: Clicker,
): Promise<boolean> {
  if (owner.kind !== "channel") return isAmong(deps, owner.id.split(","), userId);
  if (await fromOutside(deps, teamId)) return false;
  return (await deps.chat.channelMembers(owner.id)).includes(userId);
}

/** Whether the person is one of `ids` (people and user groups), or in one of its groups. */
export async function isAmong(
  deps: RuntimeDeps,
  ids: readonly string[],
  userId: string,
  lookup?: MemberLookupOptions,
): Promise<boolean> {
  if (ids.includes(userId)) return true;
  for (const id of ids)
    if (/^S[A-Z0-9]+$/.test(id) && (await deps.chat.groupMembers(id, lookup)).includes(userId))
      return true;
  return false;
}

/** The escalation's lane as the agents file in use has it; undefined when the file leaves it out. */
export function laneNow(deps: RuntimeDeps, escalation: Pick<EscalationRow, "note">) {
  const { lane } = escalation.note as { lane?: unknown };
  const { lanes } = deps.agents.file.policies;
  return typeof lane === "string" && Object.hasOwn(lanes, lane)
    ? lanes[lane as keyof typeof lanes]
    : undefined;
}

/**
 * The people and user groups the agents file in use names for an escalation's lane: its owners and
 * its fallback's. Undefined when it names none there (a lane its channel owns, or one the file
 * leaves out): the card's owners still decide, as a policy gone from the file leaves an approval's
 * card to the people it names.
 */
export function laneNamedNow(
  deps: RuntimeDeps,
  escalation: Pick<EscalationRow, "note">,
): string[] | undefined {
  const config = laneNow(deps, escalation);
  if (!config) return undefined;
  const named = [...config.users, ...config.groups];
  if (config.fallback) named.push(...config.fallback.users, ...config.fallback.groups);
  return named.length > 0 ? named : undefined;
}

/**
 * Whether the agents file in use still names the person for the escalation's lane: one taken out
 * of it since the card was posted (offboarded, by a reload or a restart) decides nothing, though
 * the card names them. Someone added since decides the escalations that come after.
 */
export async function stillNamed(
  deps: RuntimeDeps,
  escalation: Pick<EscalationRow, "note">,
  userId: string,
): Promise<boolean> {
  const named = laneNamedNow(deps, escalation);
  return named === undefined || (await isAmong(deps, named, userId));
}
