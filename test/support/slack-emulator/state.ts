// What the Slack Web API emulator remembers between calls, and the lookups every method shares.

export const SLACK_DEFAULTS = Object.freeze({
  botToken: "xoxb-test",
  /** The app-level token Socket Mode connects with (apps.connections.open). */
  appToken: "xapp-1-test",
  teamId: "T0TESTTEAM",
  teamName: "Baton Test",
  teamDomain: "baton-test",
  botUserId: "U0BATONBOT",
  botId: "B0BATONBOT",
  appId: "A0BATONAPP",
  botName: "baton",
});

export type SlackArgs = Record<string, unknown>;
export type SlackUser = {
  id: string;
  name: string;
  realName?: string;
  tz?: string;
  isBot?: boolean;
  /** Deactivated: users.info says `deleted`, and conversations.open refuses (`user_disabled`). */
  deleted?: boolean;
};
export type SlackUsergroup = { id: string; handle: string; users: string[] };
/** Stored as Slack returns it, plus `channel`; optional fields (blocks, username, ...) as posted. */
export type SlackMessage = {
  type: "message";
  channel: string;
  ts: string;
  thread_ts?: string;
  text?: string;
  user: string;
  edited?: { user: string; ts: string };
} & Record<string, unknown>;
export type SlackEmulatorOptions = Partial<typeof SLACK_DEFAULTS> & {
  users?: SlackUser[];
  usergroups?: SlackUsergroup[];
  /** Channels whose members conversations.members lists; others answer channel_not_found. */
  channels?: { id: string; members: string[] }[];
  /** The bot token's scopes, sent as Slack does in every answer's x-oauth-scopes (default: all). */
  scopes?: readonly string[];
  /** The workspace is part of this Enterprise organization (`E…`): auth.test names it. */
  enterpriseId?: string;
};
/**
 * A message seeded by a test, or posted by the bot, before it is stored. `botId` and `appId`: an
 * app posted it (Slack's `bot_id`, `app_id`); `metadata`: as chat.postMessage takes it.
 */
export type NewMessage = {
  channel: string;
  user: string;
  text?: string;
  ts?: string;
  threadTs?: string;
  blocks?: unknown;
  botId?: string;
  appId?: string;
  metadata?: unknown;
};

export type EmulatorConfig = ReturnType<typeof emulatorConfig>;
export type EmulatorState = {
  readonly cfg: EmulatorConfig;
  readonly messages: SlackMessage[];
  readonly ephemerals: SlackArgs[];
  readonly views: Map<string, Record<string, unknown>>;
  /** The Home tab each user was last published, by user id. */
  readonly homeViews: Map<string, Record<string, unknown>>;
  /** The DM channel id opened for each user id. */
  readonly dms: Map<string, string>;
  readonly users: Map<string, SlackUser>;
  readonly groups: Map<string, SlackUsergroup>;
  readonly channelMembers: Map<string, string[]>;
  /** Archived channels: Slack refuses posts and updates in them (`is_archived`). */
  readonly archived: Set<string>;
  /** The last ts handed out, in microseconds; never reset, so ts values stay in sequence. */
  lastTsMicros: number;
  viewCounter: number;
};

function emulatorConfig(options: SlackEmulatorOptions) {
  return { ...SLACK_DEFAULTS, ...options };
}

export function createEmulatorState(options: SlackEmulatorOptions): EmulatorState {
  return {
    cfg: emulatorConfig(options),
    messages: [],
    ephemerals: [],
    views: new Map(),
    homeViews: new Map(),
    dms: new Map(),
    users: new Map((options.users ?? []).map((u) => [u.id, u])),
    groups: new Map((options.usergroups ?? []).map((g) => [g.id, g])),
    channelMembers: new Map((options.channels ?? []).map((c) => [c.id, c.members])),
    archived: new Set(),
    lastTsMicros: 0,
    viewCounter: 0,
  };
}

// A ts is the Unix time Slack took the message, in microseconds, and unique in its channel.
export function nextTs(state: EmulatorState): string {
  state.lastTsMicros = Math.max(Date.now() * 1000, state.lastTsMicros + 100);
  const micros = state.lastTsMicros;
  return `${Math.floor(micros / 1e6)}.${String(micros % 1e6).padStart(6, "0")}`;
}

export function dmFor(state: EmulatorState, userId: string): string {
  let id = state.dms.get(userId);
  if (!id) {
    id = `D${String(state.dms.size + 1).padStart(9, "0")}`;
    state.dms.set(userId, id);
  }
  return id;
}

/** A user id given as a channel means that user's DM. */
export function resolveChannel(state: EmulatorState, channel: string): string {
  return /^[UW]/.test(channel) ? dmFor(state, channel) : channel;
}

export function findMessage(state: EmulatorState, channel: string, ts: string) {
  return state.messages.find((m) => m.channel === channel && m.ts === ts);
}

/** The thread root and its replies, oldest first. */
export function threadOf(state: EmulatorState, channel: string, threadTs: string) {
  return state.messages
    .filter((m) => m.channel === channel && (m.ts === threadTs || m.thread_ts === threadTs))
    .sort((a, b) => a.ts.localeCompare(b.ts));
}

export function addMessage(state: EmulatorState, m: NewMessage): SlackMessage {
  const stored: SlackMessage = {
    type: "message",
    channel: resolveChannel(state, m.channel),
    ts: m.ts ?? nextTs(state),
    user: m.user,
    text: m.text ?? "",
    ...(m.threadTs ? { thread_ts: m.threadTs } : {}),
    ...(m.blocks ? { blocks: m.blocks } : {}),
    ...(m.botId ? { bot_id: m.botId } : {}),
    ...(m.appId ? { app_id: m.appId } : {}),
    ...(m.metadata ? { metadata: m.metadata } : {}),
  };
  state.messages.push(stored);
  return stored;
}
