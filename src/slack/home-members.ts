import type { AgentsFile } from "../config/agents-schema.ts";
import { channelsOwningOpenWork } from "../db/home.repository.ts";
import type { RuntimeDeps } from "../runtime/deps.ts";

/**
 * conversations.members and usergroups.users.list are Slack's Tier 4 (about 100 calls a minute):
 * the first App Home after the lists' cache ran out asks this many at a time, not every one at once.
 */
const LOOKUPS_AT_ONCE = 4;

type Owner = { kind: "group" | "channel"; id: string };

/**
 * The groups and channels the user is a member of, among those that may own work or approve it,
 * for App Home. Each list is kept a minute by the chat surface. One Slack will not give now (a
 * 429, a deleted group, an outage) leaves only that one out of this Home: a 429 is not waited out
 * while the person looks at the tab, and the next Home asks again.
 */
export async function homeMemberships(
  deps: Pick<RuntimeDeps, "db" | "agents" | "chat" | "log">,
  userId: string,
): Promise<{ groups: string[]; channels: string[] }> {
  const owners: Owner[] = [
    ...ownerGroups(deps.agents.file.policies).map((id) => ({ kind: "group" as const, id })),
    // Work of a lane that names nobody is its channel's: each channel that owns some is asked
    // once, however many tasks it owns.
    ...(await channelsOwningOpenWork(deps.db)).map((id) => ({ kind: "channel" as const, id })),
  ];
  const member = await mapAtMost(owners, LOOKUPS_AT_ONCE, async ({ kind, id }) => {
    const now = { waitOutRateLimit: false };
    const lookup =
      kind === "group" ? deps.chat.groupMembers(id, now) : deps.chat.channelMembers(id, now);
    const users = await lookup.catch((error: unknown): string[] => {
      deps.log.warn({ err: error, [kind]: id }, `could not list a ${kind}'s members for App Home`);
      return [];
    });
    return users.includes(userId);
  });
  const of = (kind: Owner["kind"]) =>
    owners.filter((o, i) => o.kind === kind && member[i]).map((o) => o.id);
  return { groups: of("group"), channels: of("channel") };
}

/** Every group the agents file can make an owner or approver: policies, supervisors, lanes. */
function ownerGroups({ approvals, supervisors, lanes }: AgentsFile["policies"]): string[] {
  const groups = new Set([
    ...approvals.flatMap((p) => [...p.approvers.groups, ...(p.fallback?.groups ?? [])]),
    ...(supervisors?.groups ?? []),
    ...Object.values(lanes).flatMap((l) => [...(l?.groups ?? []), ...(l?.fallback?.groups ?? [])]),
  ]);
  return [...groups];
}

/** `work` on each item, `limit` at a time, the results in the items' order. */
async function mapAtMost<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = [];
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) results[i] = await work(items[i] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
