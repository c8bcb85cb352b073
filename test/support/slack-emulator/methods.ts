// The Web API methods the emulator answers, each working on the emulator's state.
import {
  addMessage,
  dmFor,
  type EmulatorState,
  findMessage,
  nextTs,
  resolveChannel,
  type SlackArgs,
  type SlackMessage,
  threadOf,
} from "./state.ts";
import { asRecord, isTrue, pick, requireArgs, SlackErr, str } from "./wire.ts";

export type SlackMethod = (state: EmulatorState, args: SlackArgs) => Record<string, unknown>;

// Messages are kept to this many per history page at most, as Slack documents.
const HISTORY_LIMIT_MAX = 999;
/** conversations.replies' page for an app outside Slack's Marketplace, created since May 2025. */
const REPLIES_LIMIT_MAX = 15;

const auth: Record<string, SlackMethod> = {
  "auth.test": ({ cfg }) => ({
    url: `https://${cfg.teamDomain}.slack.com/`,
    team: cfg.teamName,
    user: cfg.botName,
    team_id: cfg.teamId,
    user_id: cfg.botUserId,
    bot_id: cfg.botId,
    // A workspace of an Enterprise organization: Slack adds the organization's id.
    ...(cfg.enterpriseId && { enterprise_id: cfg.enterpriseId }),
    is_enterprise_install: false,
  }),
};

const chat: Record<string, SlackMethod> = {
  "chat.postMessage": (state, args) => {
    const { cfg } = state;
    requireArgs(args, "channel");
    if (!args.text && !args.blocks && !args.attachments) throw new SlackErr("no_text");
    if (state.archived.has(String(args.channel))) throw new SlackErr("is_archived");
    const message = addMessage(state, {
      channel: String(args.channel),
      user: cfg.botUserId,
      text: str(args.text),
      threadTs: str(args.thread_ts),
    });
    Object.assign(message, botMessageFields(state, args));
    const { channel, ...shown } = message;
    return {
      channel,
      ts: message.ts,
      message: { ...shown, app_id: cfg.appId, team: cfg.teamId },
    };
  },
  "chat.update": (state, args) => {
    const { cfg } = state;
    requireArgs(args, "channel", "ts");
    if (state.archived.has(String(args.channel))) throw new SlackErr("is_archived");
    const message = findMessage(
      state,
      resolveChannel(state, String(args.channel)),
      String(args.ts),
    );
    if (!message) throw new SlackErr("message_not_found");
    if (message.user !== cfg.botUserId) throw new SlackErr("cant_update_message");
    Object.assign(message, pick(args, ["text", "blocks", "attachments", "metadata"]));
    message.edited = { user: cfg.botUserId, ts: nextTs(state) };
    const { channel, ...shown } = message;
    return { channel, ts: message.ts, text: message.text ?? "", message: shown };
  },
  "chat.postEphemeral": (state, args) => {
    requireArgs(args, "channel", "user");
    const messageTs = nextTs(state);
    state.ephemerals.push({ ...args, message_ts: messageTs });
    return { message_ts: messageTs };
  },
  "chat.getPermalink": (state, args) => {
    requireArgs(args, "channel", "message_ts");
    const channel = String(args.channel);
    const ts = String(args.message_ts);
    const parent = findMessage(state, channel, ts)?.thread_ts;
    const thread = parent && parent !== ts ? `?thread_ts=${parent}&cid=${channel}` : "";
    const path = `archives/${channel}/p${ts.replace(".", "")}${thread}`;
    return { channel, permalink: `https://${state.cfg.teamDomain}.slack.com/${path}` };
  },
};

const conversations: Record<string, SlackMethod> = {
  "conversations.open": (state, args) => {
    const ids = String(args.users ?? "")
      .split(",")
      .filter(Boolean);
    if (args.channel) return { channel: { id: String(args.channel) }, already_open: true };
    if (ids.length !== 1)
      throw new SlackErr(ids.length ? "not_implemented" : "users_list_not_supplied");
    const userId = ids[0] as string;
    if (state.users.get(userId)?.deleted) throw new SlackErr("user_disabled");
    const alreadyOpen = state.dms.has(userId);
    return { no_op: alreadyOpen, already_open: alreadyOpen, channel: { id: dmFor(state, userId) } };
  },
  // Oldest first, the parent first; `oldest` and `latest` bound the replies, exclusive unless
  // `inclusive`. At most REPLIES_LIMIT_MAX a page, as Slack gives apps outside its Marketplace;
  // the cursor is opaque (here: where the next page starts).
  "conversations.replies": (state, args) => {
    requireArgs(args, "channel", "ts");
    const whole = threadOf(state, resolveChannel(state, String(args.channel)), String(args.ts));
    if (whole.length === 0) throw new SlackErr("thread_not_found");
    const inRange = tsRange(args);
    const thread = whole.filter((m, i) => i === 0 || inRange(m.ts));
    const limit = Math.min(Math.max(Number(args.limit ?? 1000) || 1000, 1), REPLIES_LIMIT_MAX);
    const start = Number(args.cursor ?? 0) || 0;
    const more = thread.length > start + limit;
    return {
      messages: thread.slice(start, start + limit).map((m) => shownMessage(m, args)),
      has_more: more,
      response_metadata: { next_cursor: more ? String(start + limit) : "" },
    };
  },
  // Newest first; thread replies are not in a channel's history, their parents are. `oldest` and
  // `latest` are exclusive unless `inclusive`; the cursor is opaque (here: the next page's ts).
  "conversations.history": (state, args) => {
    requireArgs(args, "channel");
    const channel = resolveChannel(state, String(args.channel));
    const inRange = tsRange(args);
    const timeline = state.messages
      .filter((m) => m.channel === channel && (!m.thread_ts || m.thread_ts === m.ts))
      .filter((m) => inRange(m.ts))
      .sort((a, b) => compareTs(b.ts, a.ts));
    const limit = Math.min(Math.max(Number(args.limit ?? 100) || 100, 1), HISTORY_LIMIT_MAX);
    const start = historyStart(timeline, args.cursor);
    const page = timeline.slice(start, start + limit);
    const next = timeline[start + limit];
    return {
      messages: page.map((m) => shownMessage(m, args)),
      has_more: next !== undefined,
      pin_count: 0,
      response_metadata: {
        next_cursor: next ? Buffer.from(`next_ts:${next.ts}`).toString("base64") : "",
      },
    };
  },
};

const viewMethods: Record<string, SlackMethod> = {
  "views.open": openView,
  "views.push": openView,
  // Lenient: an unknown view_id is created, since tests may act on modals they never opened here.
  "views.update": (state, args) => {
    requireArgs(args, "view");
    const byExternal = [...state.views.values()].find(
      (v) => args.external_id && v.external_id === args.external_id,
    );
    const id = str(args.view_id) ?? (byExternal?.id as string | undefined);
    if (!id) throw new SlackErr("not_found");
    return { view: storeView(state, args, id) };
  },
  "views.publish": (state, args) => {
    requireArgs(args, "user_id", "view");
    const view = storeView(state, args, newViewId(state));
    state.homeViews.set(String(args.user_id), view);
    return { view };
  },
};

const people: Record<string, SlackMethod> = {
  "users.info": (state, args) => {
    requireArgs(args, "user");
    return { user: userInfo(state, String(args.user)) };
  },
  // Paged as Slack pages it: `limit` members, then a cursor (the offset) for the next page.
  "conversations.members": (state, args) => {
    const members = state.channelMembers.get(String(args.channel));
    if (!members) throw new SlackErr("channel_not_found");
    const from = Number(args.cursor ?? 0);
    const to = from + Number(args.limit ?? 100);
    return {
      members: members.slice(from, to),
      response_metadata: { next_cursor: to < members.length ? String(to) : "" },
    };
  },
  "usergroups.users.list": (state, args) => {
    const group = state.groups.get(String(args.usergroup));
    if (!group) throw new SlackErr("no_such_subteam");
    return { users: [...group.users] };
  },
};

/** By Web API method name; a method not here answers `{ ok: true }`. */
export const slackMethods: Readonly<Record<string, SlackMethod>> = {
  ...auth,
  ...chat,
  ...conversations,
  ...viewMethods,
  ...people,
};

function openView(state: EmulatorState, args: SlackArgs) {
  requireArgs(args, "trigger_id", "view");
  return { view: storeView(state, args, newViewId(state)) };
}

function newViewId(state: EmulatorState): string {
  return `V${String(++state.viewCounter).padStart(9, "0")}`;
}

function storeView(state: EmulatorState, args: SlackArgs, id: string) {
  const { cfg } = state;
  const view = asRecord(args.view);
  const stored = {
    id,
    team_id: cfg.teamId,
    app_id: cfg.appId,
    bot_id: cfg.botId,
    type: "modal",
    blocks: [],
    private_metadata: "",
    callback_id: "",
    external_id: "",
    state: { values: {} },
    ...view,
    hash: `${Date.now()}.${id}`,
    root_view_id: id,
    previous_view_id: null,
  };
  state.views.set(id, stored);
  return stored;
}

function userInfo({ cfg, users }: EmulatorState, id: string) {
  const known = users.get(id);
  const isBot = id === cfg.botUserId || known?.isBot === true;
  const name = known?.name ?? (id === cfg.botUserId ? cfg.botName : id.toLowerCase());
  const realName = known?.realName ?? name;
  const tz = known?.tz ?? "UTC";
  return {
    id,
    team_id: cfg.teamId,
    name,
    deleted: known?.deleted === true,
    real_name: realName,
    tz,
    tz_label: tz,
    tz_offset: tzOffsetSeconds(tz),
    is_bot: isBot,
    is_admin: false,
    profile: { real_name: realName, display_name: name, ...(isBot ? { bot_id: cfg.botId } : {}) },
  };
}

// As Slack stores a message an app posted: its bot and app ids beside the bot user's id.
function botMessageFields({ cfg }: EmulatorState, args: SlackArgs) {
  return {
    bot_id: cfg.botId,
    app_id: cfg.appId,
    ...pick(args, ["username", "icon_emoji", "icon_url", "blocks", "attachments", "metadata"]),
  };
}

/** Where in a newest-first timeline the page for `cursor` starts. */
function historyStart(timeline: SlackMessage[], cursor: unknown): number {
  if (!str(cursor)) return 0;
  const from = /^next_ts:(\d+\.\d+)$/.exec(
    Buffer.from(String(cursor), "base64").toString("utf8"),
  )?.[1];
  if (!from) throw new SlackErr("invalid_cursor");
  const start = timeline.findIndex((m) => compareTs(m.ts, from) <= 0);
  return start < 0 ? timeline.length : start;
}

/** A stored message as the reading methods return it: metadata only when asked for. */
/** `oldest` and `latest`, exclusive unless `inclusive`, as a test of a message's ts. */
function tsRange(args: SlackArgs): (ts: string) => boolean {
  const inclusive = isTrue(args.inclusive);
  const oldest = str(args.oldest);
  const latest = str(args.latest);
  return (ts) =>
    (oldest === undefined || compareTs(ts, oldest) > (inclusive ? -1 : 0)) &&
    (latest === undefined || compareTs(ts, latest) < (inclusive ? 1 : 0));
}

function shownMessage({ channel: _c, ...message }: SlackMessage, args: SlackArgs) {
  if (isTrue(args.include_all_metadata)) return message;
  const { metadata: _m, ...shown } = message;
  return shown;
}

/** Orders two ts values exactly (seconds, then microseconds), past what a double can hold. */
function compareTs(a: string, b: string): number {
  const [as = "0", au = "0"] = a.split(".");
  const [bs = "0", bu = "0"] = b.split(".");
  return Number(as) - Number(bs) || Number(au.padEnd(6, "0")) - Number(bu.padEnd(6, "0"));
}

function tzOffsetSeconds(tz: string): number {
  const name = new Intl.DateTimeFormat("en-US", { timeZone: tz, timeZoneName: "longOffset" })
    .formatToParts(new Date())
    .find((p) => p.type === "timeZoneName")?.value;
  const m = /GMT([+-])(\d{2}):(\d{2})/.exec(name ?? "");
  if (!m) return 0;
  return (m[1] === "-" ? -1 : 1) * (Number(m[2]) * 3600 + Number(m[3]) * 60);
}
