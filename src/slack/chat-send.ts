import type { types, webApi } from "@slack/bolt";
import type { Persona } from "../core/ports.ts";
import type { Logger } from "../log.ts";
import { OUTBOX_EVENT } from "./find-posted.ts";
import { blocksRefused, call, SlackDeliveryError } from "./web-api-errors.ts";

/** The clients a delivery calls through (see SlackChatSurfaceOptions). */
export interface SendClients {
  log: Logger;
  poster: webApi.WebClient;
  noWait: webApi.WebClient;
}

export type Delivered = { ts?: string; channel?: string };
/** `broadcast`: a thread reply also shown in the channel ("Also send to #channel"). */
export type Target = { channel: string; threadTs?: string; broadcast?: boolean };
/** `textOnly` is sent, without blocks, if Slack refuses the blocks (default: `text`). */
export type Outgoing = { text: string; blocks?: unknown[]; textOnly?: string };

export async function postMessage(
  clients: SendClients,
  target: Target,
  message: Outgoing,
  outboxId: string,
  persona?: Persona,
): Promise<Delivered> {
  const { channel } = target;
  const answer = await orTextAlone(clients.log, message, outboxId, (content) =>
    call("chat.postMessage", () =>
      clients.poster.chat.postMessage({
        channel,
        text: content.text,
        // Blocks come from the builders or a queued direct message; Slack validates the rest.
        ...(content.blocks && { blocks: content.blocks as types.KnownBlock[] }),
        ...inThread(target),
        ...(persona && personaFields(persona)),
        metadata: { event_type: OUTBOX_EVENT, event_payload: { outbox_id: String(outboxId) } },
      }),
    ),
  );
  return { ts: answer.ts, channel: answer.channel ?? channel };
}

export async function updateMessage(
  clients: SendClients,
  place: { channel: string; ts: string },
  message: Outgoing,
  outboxId: string,
): Promise<Delivered> {
  const { channel, ts } = place;
  // findPosted never looks for updates (sending one twice is harmless): no metadata needed.
  const answer = await orTextAlone(clients.log, message, outboxId, (content) =>
    call("chat.update", () =>
      clients.noWait.chat.update({
        channel,
        ts,
        text: content.text,
        // An update without blocks keeps the card's old ones (and its buttons): clear them.
        blocks: (content.blocks as types.KnownBlock[] | undefined) ?? [],
      }),
    ),
  );
  return { ts: answer.ts ?? ts, channel: answer.channel ?? channel };
}

export async function postDirectMessage(
  clients: SendClients,
  user: string,
  message: Outgoing,
  outboxId: string,
): Promise<Delivered> {
  const opened = await call("conversations.open", () =>
    clients.noWait.conversations.open({ users: user }),
  );
  const channel = opened.channel?.id;
  if (!channel) throw new SlackDeliveryError("Slack opened no DM channel");
  return postMessage(clients, { channel }, message, outboxId);
}

export async function postEphemeral(
  clients: SendClients,
  ephemeral: { channel: string; user: string; text: string; threadTs?: string | undefined },
): Promise<Delivered> {
  // Sent at once, not from the outbox (a person over their task limit), and once: nothing
  // could find it to tell whether a failed try was shown. A 429 fails at once: the caller
  // waits it out, past the event's answer, pausing none of `client`'s calls.
  await call("chat.postEphemeral", () =>
    clients.poster.chat.postEphemeral({
      channel: ephemeral.channel,
      user: ephemeral.user,
      text: ephemeral.text,
      ...(ephemeral.threadTs && { thread_ts: ephemeral.threadTs }),
    }),
  );
  // An ephemeral message has no ts anyone can use later: it cannot be updated or found.
  return { channel: ephemeral.channel };
}

/**
 * Slack stores nothing when it refuses a message's blocks, so sending the text alone once more
 * cannot post it twice; without this the outbox would mark the row dead and the message (an
 * answer, a card a task waits on) would never show.
 */
async function orTextAlone<T>(
  log: Logger,
  message: Outgoing,
  outboxId: string,
  send: (content: Outgoing) => Promise<T>,
): Promise<T> {
  try {
    return await send(message);
  } catch (error) {
    if (!message.blocks || !blocksRefused(error)) throw error;
    log.warn({ err: error, outboxId }, "Slack refused a message's blocks: sending its text alone");
    return send({ text: message.textOnly ?? message.text });
  }
}

/** A post's place in its thread, if it has one; a broadcast reply is also shown in the channel. */
function inThread(
  target: Target,
): { thread_ts: string; reply_broadcast: true } | { thread_ts?: string } {
  if (!target.threadTs) return {};
  return target.broadcast
    ? { thread_ts: target.threadTs, reply_broadcast: true }
    : { thread_ts: target.threadTs };
}

/** Agents post under their own name; an icon is an emoji code (`:robot_face:`) or an image URL. */
function personaFields(
  persona: Persona,
):
  | { username: string }
  | { username: string; icon_emoji: string }
  | { username: string; icon_url: string } {
  const username = persona.name;
  if (persona.icon.startsWith(":")) return { username, icon_emoji: persona.icon };
  return persona.icon ? { username, icon_url: persona.icon } : { username };
}
