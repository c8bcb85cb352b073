import type { types, webApi } from "@slack/bolt";
import type { ChatIntent, ChatSurface, Persona } from "../core/ports.ts";
import type { Logger } from "../log.ts";
import { type BotIdentity, createPostedFinder, OUTBOX_EVENT } from "./find-posted.ts";
import { createMemberLookup } from "./members.ts";
import { clip, isGroupId, isUserId, MESSAGE_TEXT_MAX, mention, orElse } from "./mrkdwn.ts";
import { type ApprovalCardInput, approvalCard } from "./views/approval-card.ts";
import type { SlackMessage } from "./views/blocks.ts";
import { digestMessage } from "./views/digest.ts";
import { type EscalationCardInput, escalationCard } from "./views/escalation-card.ts";
import { handoffCard } from "./views/handoff-card.ts";
import { agentReply, failureNotice } from "./views/task-message.ts";
import { blocksRefused, call, isNotAMember, SlackDeliveryError } from "./web-api-errors.ts";

export interface SlackChatSurfaceOptions {
  log: Logger;
  /**
   * The client that posts messages and ephemerals (default: `client`). Neither is idempotent: an
   * answer lost after Slack stored the message would, retried by the client, post it twice; see
   * `postingClient`.
   */
  poster?: webApi.WebClient;
  /**
   * A client whose 429s fail at once with Slack's Retry-After (`rejectRateLimitedCalls`), where
   * `client` would wait them out and pause its other calls meanwhile: for the outbox's other calls
   * (a run waits a 429 out itself, holding no lock; a sweep leaves the row to the next sweep),
   * and App Home's member lookups (which show less rather than keep the person waiting). Default:
   * `client`.
   */
  noWaitClient?: webApi.WebClient;
  /** Baton's ids from auth.test, if known: findPosted accepts only messages it posted. */
  self?: BotIdentity;
  /** Milliseconds since the epoch; injected by tests to expire the group and channel caches. */
  now?: () => number;
  /** How long a group's or channel's members are kept (default a minute). */
  groupCacheMs?: number;
  /** The workspace's URL from auth.test (`https://acme.slack.com/`): thread links are permalinks on it. */
  workspaceUrl?: string;
}

type Intent<K extends ChatIntent["kind"]> = Extract<ChatIntent, { kind: K }>;
type Delivered = { ts?: string; channel?: string };
/** `broadcast`: a thread reply also shown in the channel ("Also send to #channel"). */
type Target = { channel: string; threadTs?: string; broadcast?: boolean };
/** `textOnly` is sent, without blocks, if Slack refuses the blocks (default: `text`). */
type Outgoing = { text: string; blocks?: unknown[]; textOnly?: string };

/** A post's place in its thread, if it has one; a broadcast reply is also shown in the channel. */
function inThread(
  target: Target,
): { thread_ts: string; reply_broadcast: true } | { thread_ts?: string } {
  if (!target.threadTs) return {};
  return target.broadcast
    ? { thread_ts: target.threadTs, reply_broadcast: true }
    : { thread_ts: target.threadTs };
}

const GROUP_CACHE_MS = 60_000;

export function createSlackChatSurface(
  client: webApi.WebClient,
  options: SlackChatSurfaceOptions,
): ChatSurface {
  const { log } = options;
  const now = options.now ?? Date.now;
  const poster = options.poster ?? client;
  const noWait = options.noWaitClient ?? client;

  /**
   * Slack stores nothing when it refuses a message's blocks, so sending the text alone once more
   * cannot post it twice; without this the outbox would mark the row dead and the message (an
   * answer, a card a task waits on) would never show.
   */
  async function orTextAlone<T>(
    message: Outgoing,
    outboxId: string,
    send: (content: Outgoing) => Promise<T>,
  ): Promise<T> {
    try {
      return await send(message);
    } catch (error) {
      if (!message.blocks || !blocksRefused(error)) throw error;
      log.warn(
        { err: error, outboxId },
        "Slack refused a message's blocks: sending its text alone",
      );
      return send({ text: message.textOnly ?? message.text });
    }
  }

  async function post(target: Target, message: Outgoing, outboxId: string, persona?: Persona) {
    const { channel } = target;
    const answer = await orTextAlone(message, outboxId, (content) =>
      call("chat.postMessage", () =>
        poster.chat.postMessage({
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

  async function postOrUpdate(
    intent: Intent<"approval_card" | "escalation_card">,
    message: SlackMessage,
    outboxId: string,
  ): Promise<Delivered> {
    if (intent.updateTs === undefined) return post(intent, message, outboxId, intent.persona);
    const updateTs = intent.updateTs;
    // findPosted never looks for updates (sending one twice is harmless): no metadata needed.
    const answer = await orTextAlone(message, outboxId, (content) =>
      call("chat.update", () =>
        noWait.chat.update({
          channel: intent.channel,
          ts: updateTs,
          text: content.text,
          // An update without blocks keeps the card's old ones (and its buttons): clear them.
          blocks: (content.blocks as types.KnownBlock[] | undefined) ?? [],
        }),
      ),
    );
    return { ts: answer.ts ?? updateTs, channel: answer.channel ?? intent.channel };
  }

  async function directMessage(user: string, message: Outgoing, outboxId: string) {
    const opened = await call("conversations.open", () =>
      noWait.conversations.open({ users: user }),
    );
    const channel = opened.channel?.id;
    if (!channel) throw new SlackDeliveryError("Slack opened no DM channel");
    return post({ channel }, message, outboxId);
  }

  async function deliver(intent: ChatIntent, outboxId: string): Promise<Delivered> {
    switch (intent.kind) {
      case "agent_reply": {
        // A cut answer's note points at the rest: `npm run audit` takes a thread link.
        const { workspaceUrl } = options;
        const auditRef = workspaceUrl && messageLink(workspaceUrl, intent.channel, intent.threadTs);
        const reply = agentReply({ text: intent.text, ...(auditRef && { auditRef }) });
        return post(intent, reply, outboxId, intent.persona);
      }
      case "handoff_card": {
        const card = handoffCard({
          fromName: intent.fromName,
          toName: intent.toName,
          ...intent.handoff,
        });
        return post(intent, card, outboxId, intent.persona);
      }
      case "approval_card":
        return postOrUpdate(intent, approvalCard(approvalInput(intent.approval)), outboxId);
      case "escalation_card":
        return postOrUpdate(intent, escalationCard(escalationInput(intent.escalation)), outboxId);
      case "notice":
        return post(intent, { text: noticeText(intent.text) }, outboxId);
      case "failure_notice": {
        // `/baton audit` takes the thread's link, not an id to copy.
        const { workspaceUrl } = options;
        const auditRef = workspaceUrl && messageLink(workspaceUrl, intent.channel, intent.threadTs);
        const notice = failureNotice({
          reason: intent.reason,
          ...(auditRef && { auditRef }),
          ...(intent.limit && { limit: intent.limit }),
        });
        return post(intent, notice, outboxId);
      }
      case "ephemeral": {
        // Sent at once, not from the outbox (a person over their task limit), and once: nothing
        // could find it to tell whether a failed try was shown. A 429 fails at once: the caller
        // waits it out, past the event's answer, pausing none of `client`'s calls.
        await call("chat.postEphemeral", () =>
          poster.chat.postEphemeral({
            channel: intent.channel,
            user: intent.user,
            text: safeText(intent.text),
            ...(intent.threadTs && { thread_ts: intent.threadTs }),
          }),
        );
        // An ephemeral message has no ts anyone can use later: it cannot be updated or found.
        return { channel: intent.channel };
      }
      case "direct_message": {
        return directMessage(intent.user, { text: safeText(intent.text) }, outboxId);
      }
      case "digest":
        return post({ channel: intent.channel }, digestMessage(intent.digest), outboxId);
      case "digest_dm":
        return directMessage(intent.user, digestMessage(intent.digest), outboxId);
    }
  }

  const { groupMembers, channelMembers } = createMemberLookup({ client, noWait }, call, {
    now,
    cacheMs: options.groupCacheMs ?? GROUP_CACHE_MS,
  });
  // Kept once known; a failed auth.test is asked again at the next look.
  let self: Promise<BotIdentity> | undefined = options.self && Promise.resolve(options.self);
  const whoAmI = () => {
    self ??= call("auth.test", () => noWait.auth.test()).then(
      (answer) => ({ botId: answer.bot_id, userId: answer.user_id }),
      (error: unknown) => {
        self = undefined;
        throw error;
      },
    );
    return self;
  };
  const findPosted = createPostedFinder(noWait, call, log, isNotAMember, whoAmI);
  const threadLink = (channel: string, threadTs: string) =>
    messageLink(options.workspaceUrl, channel, threadTs);
  const channelLink = (channel: string) => channelUrl(options.workspaceUrl, channel);
  return { deliver, findPosted, groupMembers, channelMembers, threadLink, channelLink };
}

/**
 * A message's permalink as Slack writes it: the workspace's URL, /archives/, the channel and the ts
 * without its dot. Without the workspace's URL, Slack's app_redirect opens the channel at least.
 */
export function messageLink(workspaceUrl: string | undefined, channel: string, ts: string): string {
  const link = channelUrl(workspaceUrl, channel);
  return workspaceUrl ? `${link}/p${ts.replace(".", "")}` : link;
}

/** A channel's link: under the workspace's URL, or Slack's app_redirect without one. */
function channelUrl(workspaceUrl: string | undefined, channel: string): string {
  if (!workspaceUrl) return `https://slack.com/app_redirect?${new URLSearchParams({ channel })}`;
  const base = workspaceUrl.endsWith("/") ? workspaceUrl : `${workspaceUrl}/`;
  return `${base}archives/${encodeURIComponent(channel)}`;
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

/** Plain message text: escaped so it can neither notify nor link, and within Slack's limit. */
function safeText(text: string): string {
  return orElse(clip(text, MESSAGE_TEXT_MAX), "—");
}

const LEADING_MENTION = /^<(@|!subteam\^|!here)([^>|]*)>\s*/;

/**
 * Notice text is escaped except the user, user-group and `<!here>` mentions the runtime puts first
 * (`<@U…> rest`, `<!subteam^S…> rest`, `<!here> rest`) to page an escalation's owners (`<!here>`: a
 * channel's members); a token whose ID is not a user or group ID is escaped with the rest.
 */
export function noticeText(text: string): string {
  const mentions: string[] = [];
  let rest = text;
  for (;;) {
    const match = LEADING_MENTION.exec(rest);
    const page = match && leadingMention(match[1] ?? "", match[2] ?? "");
    if (!match || !page) break;
    mentions.push(page);
    rest = rest.slice(match[0].length);
  }
  if (mentions.length === 0) return safeText(text);
  const prefix = `${mentions.join(" ")} `;
  return `${prefix}${clip(rest, MESSAGE_TEXT_MAX - prefix.length)}`.trimEnd();
}

function leadingMention(sigil: string, id: string): string | undefined {
  if (sigil === "!here") return id === "" ? "<!here>" : undefined;
  return (sigil === "@" ? isUserId(id) : isGroupId(id)) ? mention(id) : undefined;
}

function approvalInput(approval: Intent<"approval_card">["approval"]): ApprovalCardInput {
  const { state } = approval;
  return {
    ...approval,
    expiresAt: new Date(approval.expiresAt),
    state: state.status === "pending" ? state : { ...state, at: new Date(state.at) },
  };
}

function escalationInput(escalation: Intent<"escalation_card">["escalation"]): EscalationCardInput {
  return { ...escalation, state: escalationState(escalation.state) };
}

function escalationState(
  state: Intent<"escalation_card">["escalation"]["state"],
): EscalationCardInput["state"] {
  if (state.status === "open") return state;
  if (state.status === "taken_over") {
    const { closed, ...held } = state;
    const at = new Date(state.at);
    return closed
      ? { ...held, at, closed: { ...closed, at: new Date(closed.at) } }
      : { ...held, at };
  }
  return { ...state, at: new Date(state.at) };
}
