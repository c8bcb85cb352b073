import type { webApi } from "@slack/bolt";
import type { ChatIntent } from "../core/ports.ts";
import type { Logger } from "../log.ts";

/** The metadata event type that marks a message as an outbox delivery. */
export const OUTBOX_EVENT = "baton_outbox";

// Pages of 200: 2,000 replies is far past any task thread, and 2,000 messages in a channel since
// a row was written is far past what a digest channel sees before the row is retried.
const PAGE_SIZE = 200;
const PAGES_MAX = 10;
/** Slack's clock and the database's may disagree: look a little before the row was written. */
const CLOCK_SKEW_MS = 5 * 60_000;

type Call = <T>(method: string, run: () => Promise<T>) => Promise<T>;
type Found = { ts?: string; metadata?: unknown; bot_id?: string; user?: string };
type Page = { messages?: Found[]; response_metadata?: { next_cursor?: string } };

/**
 * Who Baton is, as auth.test says: its bot's id and its bot user's id, and the workspace that
 * installed it (its id, name, and Enterprise organization's id when it is in one).
 */
export interface BotIdentity {
  botId?: string;
  userId?: string;
  teamId?: string;
  teamName?: string;
  enterpriseId?: string;
}

/** auth.test's answer as Baton's identity. */
export function identityOf(answer: webApi.AuthTestResponse): BotIdentity {
  return {
    botId: answer.bot_id,
    userId: answer.user_id,
    teamId: answer.team_id,
    teamName: answer.team,
    enterpriseId: answer.enterprise_id,
  };
}

/**
 * Finds the message Baton posted for an outbox row, by the outbox id in its metadata: in the task's
 * thread, or, for a message outside a thread (a digest, a DM), in the conversation's history since
 * the row was written. Updates and ephemerals are never looked for (nothing to find, or harmless).
 * Only a message Baton posted counts: anyone may post one with the same metadata (outbox ids are a
 * sequence), and one that counted would stand for the real post, which would never go out.
 */
export function createPostedFinder(
  client: webApi.WebClient,
  call: Call,
  log: Logger,
  isNotAMember: (error: unknown) => boolean,
  self: () => Promise<BotIdentity>,
) {
  async function search(
    outboxId: string,
    page: (cursor: string | undefined) => Promise<Page>,
  ): Promise<string | undefined> {
    const me = await self();
    let cursor: string | undefined;
    for (let n = 0; n < PAGES_MAX; n++) {
      const answer = await page(cursor);
      const found = answer.messages?.find(
        (m) => isOutboxMessage(m.metadata, outboxId) && postedBy(m, me),
      );
      if (found?.ts) {
        log.info({ outboxId, ts: found.ts }, "outbox message was already in Slack");
        return found.ts;
      }
      cursor = answer.response_metadata?.next_cursor || undefined;
      if (!cursor) return undefined;
    }
    return undefined;
  }

  const inThread = (thread: { channel: string; threadTs: string }, outboxId: string) =>
    search(outboxId, (cursor) =>
      call("conversations.replies", () =>
        client.conversations.replies({
          channel: thread.channel,
          ts: thread.threadTs,
          include_all_metadata: true,
          limit: PAGE_SIZE,
          ...(cursor && { cursor }),
        }),
      ),
    );

  async function inHistory(place: Place, outboxId: string, writtenAt: Date) {
    const channel = "user" in place ? await openDm(place.user) : place.channel;
    // Slack's ts is the Unix time it took the message, with microseconds.
    const oldest = ((writtenAt.getTime() - CLOCK_SKEW_MS) / 1000).toFixed(6);
    try {
      return await search(outboxId, (cursor) =>
        call("conversations.history", () =>
          client.conversations.history({
            channel,
            oldest,
            include_all_metadata: true,
            limit: PAGE_SIZE,
            ...(cursor && { cursor }),
          }),
        ),
      );
    } catch (error) {
      // chat:write.public posts to a channel the app has not joined, whose history it cannot read:
      // posting again may repeat the message, but refusing would lose it.
      if (!isNotAMember(error)) throw error;
      log.warn({ outboxId, channel }, "cannot read the channel's history to look for a message");
      return undefined;
    }
  }

  async function openDm(user: string): Promise<string> {
    const opened = await call("conversations.open", () =>
      client.conversations.open({ users: user }),
    );
    return opened.channel?.id ?? user;
  }

  return async function findPosted(
    intent: ChatIntent,
    outboxId: string,
    writtenAt: Date,
  ): Promise<string | undefined> {
    const place = wherePosted(intent);
    if (!place) return undefined;
    if ("threadTs" in place) return inThread(place, outboxId);
    return inHistory(place, outboxId, writtenAt);
  };
}

type Place = { channel: string; threadTs: string } | { channel: string } | { user: string };

/** Where a posted (not updated, not ephemeral) message would be. */
function wherePosted(intent: ChatIntent): Place | undefined {
  switch (intent.kind) {
    case "agent_reply":
    case "handoff_card":
    case "failure_notice":
      return { channel: intent.channel, threadTs: intent.threadTs };
    case "approval_card":
    case "escalation_card":
      // Updates are idempotent: sending one again is harmless.
      if (intent.updateTs !== undefined) return undefined;
      return intent.threadTs === undefined
        ? { channel: intent.channel }
        : { channel: intent.channel, threadTs: intent.threadTs };
    case "notice":
      return intent.threadTs === undefined
        ? { channel: intent.channel }
        : { channel: intent.channel, threadTs: intent.threadTs };
    case "digest":
      return { channel: intent.channel };
    case "direct_message":
    case "digest_dm":
      return { user: intent.user };
    case "ephemeral":
      // An ephemeral message has no ts anyone can look up later.
      return undefined;
  }
}

/**
 * Slack sets a message's `bot_id` and `user` from the token that posted it: Baton's bot token gives
 * Baton's bot id (with or without a persona's name and icon), and no one else's message has either.
 */
function postedBy(message: Found, me: BotIdentity): boolean {
  if (me.botId && message.bot_id) return message.bot_id === me.botId;
  return me.userId !== undefined && message.user === me.userId;
}

function isOutboxMessage(metadata: unknown, outboxId: string): boolean {
  if (typeof metadata !== "object" || metadata === null) return false;
  const { event_type, event_payload } = metadata as {
    event_type?: unknown;
    event_payload?: unknown;
  };
  if (event_type !== OUTBOX_EVENT || typeof event_payload !== "object" || event_payload === null) {
    return false;
  }
  // pg gives bigint ids as numbers, the turn's statement as strings: compare their text.
  return String((event_payload as { outbox_id?: unknown }).outbox_id) === String(outboxId);
}
