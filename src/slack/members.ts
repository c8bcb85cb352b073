import type { webApi } from "@slack/bolt";
import type { MemberLookupOptions } from "../core/ports.ts";
import { RetryAfterError } from "../errors.ts";

type Call = <T>(method: string, run: () => Promise<T>) => Promise<T>;
type Client = webApi.WebClient;

/**
 * Who is in a user group or a channel, for the checks on clicks (approvers, a lane's owners) and
 * App Home. Each list is cached for `cacheMs`; the promise is cached, so checks at once share one
 * call, and a failure is not remembered. `client` waits out a 429; `noWait` fails at once on one.
 */
export function createMemberLookup(
  clients: { client: Client; noWait: Client },
  call: Call,
  options: { now: () => number; cacheMs: number },
) {
  const cached = new Map<string, { users: Promise<string[]>; expiresAt: number; waits: boolean }>();
  // A list is asked for again only while its group or channel owns or approves work: one no longer
  // asked for (an archived channel, a lane moved elsewhere) would keep its members for the process's
  // life. Swept at each call to Slack, which comes at most once a list per `cacheMs`.
  const dropExpired = (at: number) => {
    for (const [key, entry] of cached) if (entry.expiresAt <= at) cached.delete(key);
  };
  async function members(
    key: string,
    load: (client: Client) => Promise<string[]>,
    lookup: MemberLookupOptions = {},
  ): Promise<string[]> {
    const waits = lookup.waitOutRateLimit ?? true;
    const at = options.now();
    const hit = cached.get(key);
    if (hit && hit.expiresAt > at) {
      // A check that waits out a 429 asks again itself if the call it shared did not wait.
      const shared = await hit.users.catch((error: unknown) => {
        if (waits && !hit.waits && error instanceof RetryAfterError) return undefined;
        throw error;
      });
      if (shared) return [...shared];
    }
    const users = load(waits ? clients.client : clients.noWait);
    dropExpired(at);
    cached.set(key, { users, expiresAt: at + options.cacheMs, waits });
    users.catch(() => {
      if (cached.get(key)?.users === users) cached.delete(key);
    });
    return [...(await users)];
  }

  const groupMembers = (groupId: string, lookup?: MemberLookupOptions) =>
    members(
      `group:${groupId}`,
      async (client) => {
        const answer = await call("usergroups.users.list", () =>
          client.usergroups.users.list({ usergroup: groupId }),
        );
        return answer.users ?? [];
      },
      lookup,
    );

  // A page of a thousand at a time: a large channel's members come in several.
  const channelMembers = (channelId: string, lookup?: MemberLookupOptions) =>
    members(
      `channel:${channelId}`,
      async (client) => {
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
      },
      lookup,
    );

  /** How many lists are held, expired ones included. */
  const listsHeld = () => cached.size;

  return { groupMembers, channelMembers, listsHeld };
}
