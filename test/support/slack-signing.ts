// Delivers signed requests to a Bolt HTTP endpoint the way Slack does.
import { createHmac, randomBytes } from "node:crypto";
import { SLACK_DEFAULTS } from "./slack-emulator.ts";

export type Delivery = { status: number; body: string; json: unknown };
export type SlackEvent = Record<string, unknown> & { type: string };
type Json = Record<string, unknown>;

const FORM = "application/x-www-form-urlencoded";
let eventCounter = 0;
// Event ts values sit below the emulator's (1700000000.*), so a seeded question sorts before replies.
let eventTsCounter = 0;

export function signSlackRequest(
  secret: string,
  body: string,
  timestamp: number = Math.floor(Date.now() / 1000),
): Record<string, string> {
  const digest = createHmac("sha256", secret).update(`v0:${timestamp}:${body}`).digest("hex");
  return { "X-Slack-Signature": `v0=${digest}`, "X-Slack-Request-Timestamp": String(timestamp) };
}

async function post(
  url: string,
  secret: string,
  body: string,
  contentType: string,
  extra: { timestamp?: number; headers?: Record<string, string> } = {},
): Promise<Delivery> {
  const headers = {
    "Content-Type": contentType,
    "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
    ...signSlackRequest(secret, body, extra.timestamp),
    ...extra.headers,
  };
  const res = await fetch(url, { method: "POST", headers, body });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, body: text, json };
}

export type DeliverEventOptions = {
  eventId?: string;
  retryNum?: number;
  retryReason?: string;
  timestamp?: number;
  teamId?: string;
};

export function eventEnvelope(event: SlackEvent, options: DeliverEventOptions = {}): Json {
  const teamId = options.teamId ?? SLACK_DEFAULTS.teamId;
  return {
    token: "verification-token-unused",
    team_id: teamId,
    context_team_id: teamId,
    api_app_id: SLACK_DEFAULTS.appId,
    event,
    type: "event_callback",
    event_id: options.eventId ?? `Ev${String(++eventCounter).padStart(8, "0")}TEST`,
    event_time: Math.floor(Date.now() / 1000),
    authorizations: [
      {
        enterprise_id: null,
        team_id: teamId,
        user_id: SLACK_DEFAULTS.botUserId,
        is_bot: true,
        is_enterprise_install: false,
      },
    ],
    is_ext_shared_channel: false,
    event_context: `4-${randomBytes(8).toString("hex")}`,
  };
}

/** Posts an Events API event_callback; a retryNum adds Slack's retry headers. */
export function deliverEvent(
  endpointUrl: string,
  secret: string,
  event: SlackEvent,
  options: DeliverEventOptions = {},
): Promise<Delivery> {
  const headers: Record<string, string> = {};
  if (options.retryNum !== undefined) {
    headers["X-Slack-Retry-Num"] = String(options.retryNum);
    headers["X-Slack-Retry-Reason"] = options.retryReason ?? "http_timeout";
  }
  const body = JSON.stringify(eventEnvelope(event, options));
  return post(endpointUrl, secret, body, "application/json", {
    timestamp: options.timestamp,
    headers,
  });
}

export function deliverUrlVerification(
  endpointUrl: string,
  secret: string,
  challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
): Promise<Delivery> {
  const body = JSON.stringify({
    token: "verification-token-unused",
    challenge,
    type: "url_verification",
  });
  return post(endpointUrl, secret, body, "application/json");
}

/** Posts `payload=<json>` form-encoded, as Slack's interactivity requests do. */
export function deliverInteraction(
  endpointUrl: string,
  secret: string,
  payload: Json,
  options: { timestamp?: number } = {},
): Promise<Delivery> {
  const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
  return post(endpointUrl, secret, body, FORM, options);
}

export type CommandFields = {
  command: string;
  text: string;
  user_id: string;
  channel_id: string;
} & Record<string, string>;

export function deliverCommand(
  endpointUrl: string,
  secret: string,
  fields: CommandFields,
  options: { timestamp?: number } = {},
): Promise<Delivery> {
  const body = new URLSearchParams({
    token: "verification-token-unused",
    team_id: SLACK_DEFAULTS.teamId,
    team_domain: SLACK_DEFAULTS.teamDomain,
    channel_name: fields.channel_id,
    user_name: fields.user_id.toLowerCase(),
    api_app_id: SLACK_DEFAULTS.appId,
    is_enterprise_install: "false",
    response_url: `https://hooks.slack.com/commands/${SLACK_DEFAULTS.teamId}/1/unused`,
    trigger_id: triggerId(),
    ...fields,
  }).toString();
  return post(endpointUrl, secret, body, FORM, options);
}

export function nextEventTs(): string {
  const micros = 1_690_000_000_000_000 + ++eventTsCounter * 100;
  return `${Math.floor(micros / 1e6)}.${String(micros % 1e6).padStart(6, "0")}`;
}

type MessageEventInput = {
  user: string;
  channel: string;
  text: string;
  ts?: string;
  threadTs?: string;
  /** Who wrote the thread's first message, as Slack says in a reply (`parent_user_id`). */
  parentUserId?: string;
};

function messageFields(input: MessageEventInput): Json {
  const ts = input.ts ?? nextEventTs();
  return {
    user: input.user,
    text: input.text,
    ts,
    channel: input.channel,
    event_ts: ts,
    team: SLACK_DEFAULTS.teamId,
    ...(input.threadTs ? { thread_ts: input.threadTs } : {}),
    ...(input.parentUserId ? { parent_user_id: input.parentUserId } : {}),
  };
}

/** An app_mention; `text` should contain `<@U0BATONBOT>` when it matters to the listener. */
export function appMentionEvent(input: MessageEventInput): SlackEvent {
  return { type: "app_mention", ...messageFields(input) };
}

export function messageEvent(input: MessageEventInput & { channelType?: string }): SlackEvent {
  const channelType = input.channelType ?? (input.channel.startsWith("D") ? "im" : "channel");
  return { type: "message", channel_type: channelType, ...messageFields(input) };
}

/**
 * A message edited (Slack's `message_changed`): the message as it is now under `message`, with no
 * user at the top. `editTs` is the edit's own ts; `edited: false` is a change that is no edit (an
 * unfurl, a thread's reply count). `botId` marks a bot's message (Baton's cards, updated in place).
 */
export function messageChangedEvent(
  input: MessageEventInput & {
    ts: string;
    previousText: string;
    editTs?: string;
    edited?: boolean;
    botId?: string;
    channelType?: string;
  },
): SlackEvent {
  const editTs = input.editTs ?? nextEventTs();
  const channelType = input.channelType ?? (input.channel.startsWith("D") ? "im" : "channel");
  const message = (text: string) => ({
    type: "message",
    user: input.user,
    text,
    ts: input.ts,
    team: SLACK_DEFAULTS.teamId,
    ...(input.botId && { bot_id: input.botId }),
    ...(input.threadTs && { thread_ts: input.threadTs }),
  });
  return {
    type: "message",
    subtype: "message_changed",
    hidden: true,
    channel: input.channel,
    channel_type: channelType,
    ts: editTs,
    event_ts: editTs,
    message: {
      ...message(input.text),
      ...(input.edited !== false && { edited: { user: input.user, ts: editTs } }),
    },
    previous_message: message(input.previousText),
  };
}

function triggerId(): string {
  return `${Date.now()}.${randomBytes(6).toString("hex")}`;
}

/**
 * The person in an interaction payload. `teamId` is their own team: the workspace's by default,
 * another organization's for its people in a Slack Connect channel, the organization's (`E…`) in
 * an Enterprise organization; null leaves it out, as a payload that does not say.
 */
function userObject(userId: string, teamId: string | null = SLACK_DEFAULTS.teamId): Json {
  const name = userId.toLowerCase();
  return { id: userId, username: name, name, ...(teamId !== null && { team_id: teamId }) };
}

const team = { id: SLACK_DEFAULTS.teamId, domain: SLACK_DEFAULTS.teamDomain };

export type BlockActionsInput = {
  userId: string;
  actionId: string;
  value?: string;
  blockId?: string;
  channel: string;
  messageTs: string;
  /** The message the button sits on, as Slack echoes it back. */
  message?: Json;
  /** Point this at emulator.responseUrl to record respond() calls. */
  responseUrl?: string;
  threadTs?: string;
  /** The clicker's own team (`user.team_id`; see userObject). */
  userTeamId?: string | null;
};

export function blockActionsPayload(input: BlockActionsInput): Json {
  return {
    type: "block_actions",
    user: userObject(input.userId, input.userTeamId),
    api_app_id: SLACK_DEFAULTS.appId,
    token: "verification-token-unused",
    container: {
      type: "message",
      message_ts: input.messageTs,
      channel_id: input.channel,
      is_ephemeral: false,
      ...(input.threadTs ? { thread_ts: input.threadTs } : {}),
    },
    trigger_id: triggerId(),
    team,
    enterprise: null,
    is_enterprise_install: false,
    channel: { id: input.channel, name: input.channel.toLowerCase() },
    message: input.message ?? {
      type: "message",
      user: SLACK_DEFAULTS.botUserId,
      bot_id: SLACK_DEFAULTS.botId,
      ts: input.messageTs,
      text: "",
      ...(input.threadTs ? { thread_ts: input.threadTs } : {}),
    },
    state: { values: {} },
    response_url:
      input.responseUrl ?? `https://hooks.slack.com/actions/${SLACK_DEFAULTS.teamId}/1/unused`,
    actions: [
      {
        type: "button",
        action_id: input.actionId,
        block_id: input.blockId ?? "actions",
        text: { type: "plain_text", text: input.actionId, emoji: true },
        ...(input.value !== undefined ? { value: input.value } : {}),
        action_ts: nextEventTs(),
      },
    ],
  };
}

/** A string value is shorthand for a plain_text_input; pass an object for other element states. */
export type SubmittedValues = Record<string, Record<string, string | Json>>;

export type ViewSubmissionInput = {
  userId: string;
  callbackId: string;
  privateMetadata?: string;
  values?: SubmittedValues;
  viewId?: string;
  /** The submitter's own team (`user.team_id`; see userObject). */
  userTeamId?: string | null;
};

export function viewSubmissionPayload(input: ViewSubmissionInput): Json {
  const values: Record<string, Record<string, Json>> = {};
  for (const [blockId, actions] of Object.entries(input.values ?? {})) {
    values[blockId] = Object.fromEntries(
      Object.entries(actions).map(([actionId, v]) => [
        actionId,
        typeof v === "string" ? { type: "plain_text_input", value: v } : v,
      ]),
    );
  }
  const viewId = input.viewId ?? `V${randomBytes(5).toString("hex").toUpperCase()}`;
  return {
    type: "view_submission",
    team,
    user: userObject(input.userId, input.userTeamId),
    api_app_id: SLACK_DEFAULTS.appId,
    token: "verification-token-unused",
    trigger_id: triggerId(),
    view: {
      id: viewId,
      team_id: SLACK_DEFAULTS.teamId,
      type: "modal",
      blocks: [],
      private_metadata: input.privateMetadata ?? "",
      callback_id: input.callbackId,
      state: { values },
      hash: `${Math.floor(Date.now() / 1000)}.${randomBytes(4).toString("hex")}`,
      title: { type: "plain_text", text: "Baton", emoji: true },
      clear_on_close: false,
      notify_on_close: false,
      close: null,
      submit: { type: "plain_text", text: "Submit", emoji: true },
      previous_view_id: null,
      root_view_id: viewId,
      app_id: SLACK_DEFAULTS.appId,
      external_id: "",
      app_installed_team_id: SLACK_DEFAULTS.teamId,
      bot_id: SLACK_DEFAULTS.botId,
    },
    response_urls: [],
    is_enterprise_install: false,
    enterprise: null,
  };
}
