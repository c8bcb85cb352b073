import type { webApi } from "@slack/bolt";

type Call = <T>(method: string, run: () => Promise<T>) => Promise<T>;

/**
 * Who is in a user group or a channel, for the checks on clicks (approvers, a lane's owners).
 * Each list is cached for `cacheMs`; the promise is cached, so checks at once share one call, and
 * a failure is not remembered.
 */
export function createMemberLookup(
  client: webApi.WebClient,
  call: Call,
  options: { now: () => number; cacheMs: number },
) {
  const cached = new Map<string, { users: Promise<string[]>; expiresAt: number }>();
  async function members(key: string, load: () => Promise<string[]>): Promise<string[]> {
    const at = options.now();
    const hit = cached.get(key);
    if (hit && hit.expiresAt > at) return [...(await hit.users)];
    const users = load();
    cached.set(key, { users, expiresAt: at + options.cacheMs });
    users.catch(() => {
      if (cached.get(key)?.users === users) cached.delete(key);
    });
    return [...(await users)];
  }

  const groupMembers = (groupId: string) =>
    members(`group:${groupId}`, async () => {
      const answer = await call("usergroups.users.list", () =>
        client.usergroups.users.list({ usergroup: groupId }),
      );
      return answer.users ?? [];
    });

  // A page of a thousand at a time: a large channel's members come in several.
  const channelMembers = (channelId: string) =>
    members(`channel:${channelId}`, async () => {
      const found: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await call("conversations.members", () =>
          client.conversations.members({
            channel: channelId,
            limit: 1000,
            ...(cursor && { cursor }),
          }),
        );
        found.push(...(page.members ?? []));
        cursor = page.response_metadata?.next_cursor || undefined;
      } while (cursor);
      return found;
    });

  return { groupMembers, channelMembers };
}
