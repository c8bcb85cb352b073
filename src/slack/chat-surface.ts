import type { webApi } from "@slack/bolt";
import type { ChatIntent, ChatSurface, Organization, Persona } from "../core/ports.ts";
import type { Logger } from "../log.ts";
import {
  type Delivered,
  type Outgoing,
  postDirectMessage,
  postEphemeral,
  postMessage,
  type SendClients,
  type Target,
  updateMessage,
} from "./chat-send.ts";
import { type BotIdentity, createPostedFinder, identityOf } from "./find-posted.ts";
import { createMemberLookup } from "./members.ts";
import { clip, isGroupId, isUserId, MESSAGE_TEXT_MAX, mention, orElse } from "./mrkdwn.ts";
import { type ApprovalCardInput, approvalCard } from "./views/approval-card.ts";
import type { SlackMessage } from "./views/blocks.ts";
import { digestMessage } from "./views/digest.ts";
import { type EscalationCardInput, escalationCard } from "./views/escalation-card.ts";
import { handoffCard } from "./views/handoff-card.ts";
import { agentReply, failureNotice } from "./views/task-message.ts";
import { call, isNotAMember } from "./web-api-errors.ts";

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

const GROUP_CACHE_MS = 60_000;

export function createSlackChatSurface(
  client: webApi.WebClient,
  options: SlackChatSurfaceOptions,
): ChatSurface {
  const { log, workspaceUrl } = options;
  const noWait = options.noWaitClient ?? client;
  const clients: SendClients = { log, poster: options.poster ?? client, noWait };
  const { groupMembers, channelMembers } = createMemberLookup({ client, noWait }, call, {
    now: options.now ?? Date.now,
    cacheMs: options.groupCacheMs ?? GROUP_CACHE_MS,
  });
  const whoAmI = botIdentity(noWait, options.self);
  return {
    deliver: (intent, outboxId) => deliver(clients, workspaceUrl, intent, outboxId),
    findPosted: createPostedFinder(noWait, call, log, isNotAMember, whoAmI),
    groupMembers,
    channelMembers,
    threadLink: (channel, threadTs) => messageLink(workspaceUrl, channel, threadTs),
    channelLink: (channel) => channelUrl(workspaceUrl, channel),
    ownOrganization: () => organizationOf(whoAmI),
  };
}

/**
 * The organization that installed Baton, from auth.test (asked at the start, so known at once
 * after it); undefined while Slack does not answer it, and asked again at the next look.
 */
async function organizationOf(
  whoAmI: () => Promise<BotIdentity>,
): Promise<Organization | undefined> {
  const self = await whoAmI().catch(() => undefined);
  if (!self?.teamId) return undefined;
  return { teamId: self.teamId, enterpriseId: self.enterpriseId, name: self.teamName };
}

/** Baton's ids, by auth.test: kept once known; a failed one is asked again at the next look. */
function botIdentity(noWait: webApi.WebClient, known?: BotIdentity): () => Promise<BotIdentity> {
  let self: Promise<BotIdentity> | undefined = known && Promise.resolve(known);
  return () => {
    self ??= call("auth.test", () => noWait.auth.test()).then(
      (answer) => identityOf(answer),
      (error: unknown) => {
        self = undefined;
        throw error;
      },
    );
    return self;
  };
}

async function deliver(
  clients: SendClients,
  workspaceUrl: string | undefined,
  intent: ChatIntent,
  outboxId: string,
): Promise<Delivered> {
  const post = (target: Target, message: Outgoing, persona?: Persona) =>
    postMessage(clients, target, message, outboxId, persona);
  const dm = (user: string, message: Outgoing) =>
    postDirectMessage(clients, user, message, outboxId);
  switch (intent.kind) {
    case "agent_reply":
      return post(intent, agentReplyMessage(intent, workspaceUrl), intent.persona);
    case "handoff_card":
      return post(intent, handoffMessage(intent), intent.persona);
    case "approval_card":
      return postOrUpdate(clients, intent, approvalCard(approvalInput(intent.approval)), outboxId);
    case "escalation_card": {
      const card = escalationCard(escalationInput(intent.escalation));
      return postOrUpdate(clients, intent, card, outboxId);
    }
    case "notice":
      return post(intent, { text: noticeText(intent.text) });
    case "failure_notice":
      return post(intent, failureMessage(intent, workspaceUrl));
    case "ephemeral":
      return postEphemeral(clients, { ...intent, text: safeText(intent.text) });
    case "direct_message":
      return dm(intent.user, { text: safeText(intent.text) });
    case "digest":
      return post({ channel: intent.channel }, digestMessage(intent.digest));
    case "digest_dm":
      return dm(intent.user, digestMessage(intent.digest));
  }
}

function agentReplyMessage(intent: Intent<"agent_reply">, workspaceUrl: string | undefined) {
  // A cut answer's note points at the rest: `npm run audit` takes a thread link.
  const auditRef = workspaceUrl && messageLink(workspaceUrl, intent.channel, intent.threadTs);
  return agentReply({ text: intent.text, ...(auditRef && { auditRef }) });
}

function handoffMessage(intent: Intent<"handoff_card">): SlackMessage {
  return handoffCard({ fromName: intent.fromName, toName: intent.toName, ...intent.handoff });
}

function failureMessage(intent: Intent<"failure_notice">, workspaceUrl: string | undefined) {
  // `/baton audit` takes the thread's link, not an id to copy.
  const auditRef = workspaceUrl && messageLink(workspaceUrl, intent.channel, intent.threadTs);
  return failureNotice({
    reason: intent.reason,
    ...(auditRef && { auditRef }),
    ...(intent.limit && { limit: intent.limit }),
  });
}

/** A card is posted once, then updated in place as it is decided. */
function postOrUpdate(
  clients: SendClients,
  intent: Intent<"approval_card" | "escalation_card">,
  message: SlackMessage,
  outboxId: string,
): Promise<Delivered> {
  if (intent.updateTs === undefined)
    return postMessage(clients, intent, message, outboxId, intent.persona);
  return updateMessage(
    clients,
    { channel: intent.channel, ts: intent.updateTs },
    message,
    outboxId,
  );
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
