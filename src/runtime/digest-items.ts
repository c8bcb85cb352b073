import type {
  DigestApprovalItem,
  DigestFailedItem,
  DigestInput,
  DigestList,
  DigestTaskItem,
} from "../core/digest.ts";
import type { failedTasks, staleApprovals, staleTasks } from "../db/reports.repository.ts";
import type { Logger } from "../log.ts";
import { openPlace } from "./decision-place.ts";
import type { DigestDeps } from "./digest.ts";

// The digest's items: each with the words the channel may read, and who gets it in their own DM.

/** Everything the digest lists, with who each item belongs to. */
export interface Digest {
  input: DigestInput;
  /** The lists whose read stopped at its limit: every count of them is a floor. */
  cut: Record<DigestList, boolean>;
  staleTasks: Owned<DigestTaskItem>[];
  staleApprovals: Owned<DigestApprovalItem>[];
  failedTasks: Owned<DigestFailedItem>[];
}

/**
 * `users` get `item` in their own digest, and so do the members of `groups` (but `except`: those
 * who asked for an approval are not put before it); the channel gets `shared`, without words it
 * may not read.
 */
export type Owned<T> = {
  item: T;
  users: string[];
  groups?: string[];
  except?: ReadonlySet<string>;
  /** A lane's channel that owns it: its members may read it, and hear of it there. */
  channels?: string[];
  shared: T;
};

// A task's words (what its requester wrote, and a failure reason that may quote them) go only
// where /baton would show them: to people on it, and to the channels its thread is in or its lane
// gave it to (see read-access.ts). The digest channel gets the rest without them, with the link
// for those who can open the thread.
export const WITHHELD = "a task in another conversation (its words stay there)";

export type Linker = (row: { channel_id: string; thread_ts: string }) => string;
/** Opens a task where those the digest goes to can (see openPlace). */
export type TaskLinker = (task: { id: string; channel_id: string; thread_ts: string }) => string;

const USER_ID = /^[UW][A-Z0-9]+$/;

type Row<F extends (...args: never[]) => Promise<unknown[]>> = Awaited<ReturnType<F>>[number];

/** Only a person (a user id) gets a DM; a group's members get theirs (see withGroupMembers). */
const humanOwner = (kind: string, id: string) =>
  kind === "human" ? id.split(",").filter((one) => USER_ID.test(one)) : [];
const groupOwner = (kind: string, id: string) =>
  kind === "human" ? id.split(",").filter((one) => GROUP_ID.test(one)) : [];
const GROUP_ID = /^S[A-Z0-9]+$/;
// A lane that names nobody gives the work to its channel's members (see laneOwner).
const channelOwner = (kind: string, id: string) =>
  kind === "human" && CHANNEL_ID.test(id) ? [id] : [];
const CHANNEL_ID = /^[CG][A-Z0-9]+$/;

/**
 * Work a user group owns (an escalation lane, an approval's approvers) reaches each member's own
 * digest, as a person's does: with no digest channel, nobody saw it. A group Slack will not list
 * now is left to the channel digest, and logged.
 */
export async function withGroupMembers(
  deps: DigestDeps,
  log: Logger,
  digest: Digest,
): Promise<Digest> {
  const lists = [
    digest.staleTasks,
    digest.staleApprovals,
    digest.failedTasks,
  ] as Owned<unknown>[][];
  const groups = new Set(lists.flat().flatMap((o) => o.groups ?? []));
  if (groups.size === 0 || !deps.chat) return digest;
  const members = new Map<string, string[]>();
  for (const group of groups) {
    try {
      members.set(group, await deps.chat.groupMembers(group));
    } catch (error) {
      log.warn({ err: error, group }, "could not list a group's members for the digest");
    }
  }
  const expand = <T>(o: Owned<T>): Owned<T> => {
    const added = (o.groups ?? []).flatMap((g) => members.get(g) ?? []);
    const users = [...new Set([...o.users, ...added])].filter((u) => !o.except?.has(u));
    return { ...o, users };
  };
  return {
    ...digest,
    staleTasks: digest.staleTasks.map(expand),
    staleApprovals: digest.staleApprovals.map(expand),
    failedTasks: digest.failedTasks.map(expand),
  };
}

export function staleTaskItem(
  t: Row<typeof staleTasks>,
  agentName: (id: string) => string,
  link: TaskLinker,
  openHere: boolean,
): Owned<DigestTaskItem> {
  const owner =
    t.owner_kind === "human"
      ? { kind: "human" as const, id: t.owner_id }
      : { kind: "agent" as const, id: t.owner_id, name: agentName(t.owner_id) };
  const item = {
    title: t.title,
    owner,
    lastActivityAt: t.last_activity_at.toISOString(),
    link: link(t),
  };
  return {
    item,
    users: humanOwner(t.owner_kind, t.owner_id),
    groups: groupOwner(t.owner_kind, t.owner_id),
    channels: channelOwner(t.owner_kind, t.owner_id),
    shared: openHere ? item : { ...item, title: WITHHELD },
  };
}

export function staleApprovalItem(
  a: Row<typeof staleApprovals>,
  agentName: (id: string) => string,
  link: Linker,
  openHere: boolean,
  askedBy: ReadonlySet<string> = new Set(),
): Owned<DigestApprovalItem> {
  // An escalated approval's approvers are its fallback people (the escalation put them there).
  const ids = [...new Set([...a.approvers.users, ...a.approvers.groups])];
  const item = {
    toolName: a.tool,
    agentName: agentName(a.agent_id),
    taskTitle: a.title,
    approverIds: ids,
    requestedAt: a.created_at.toISOString(),
    // A direct message's task: its card is where the approvers are, its thread is not.
    link: linkToPlace(
      link,
      openPlace(
        a,
        a.card_channel && a.card_ts ? { channel: a.card_channel, ts: a.card_ts } : undefined,
      ),
    ),
  };
  return {
    item,
    users: ids.filter((id) => USER_ID.test(id) && !askedBy.has(id)),
    groups: a.approvers.groups,
    except: askedBy,
    shared: openHere ? item : { ...item, taskTitle: WITHHELD },
  };
}

export function failedTaskItem(
  f: Row<typeof failedTasks>,
  now: Date,
  link: TaskLinker,
  openHere: boolean,
): Owned<DigestFailedItem> {
  const item = {
    title: f.title,
    reason: f.failure_reason ?? "unknown",
    failedAt: (f.closed_at ?? now).toISOString(),
    link: link(f),
  };
  return {
    item,
    users: humanOwner(f.owner_kind, f.owner_id),
    groups: groupOwner(f.owner_kind, f.owner_id),
    channels: channelOwner(f.owner_kind, f.owner_id),
    // No reason: a tool's or model's error may quote the words withheld.
    shared: openHere ? item : { title: WITHHELD, failedAt: item.failedAt, link: item.link },
  };
}

function linkToPlace(link: Linker, place: { channel: string; ts: string }): string {
  return link({ channel_id: place.channel, thread_ts: place.ts });
}
