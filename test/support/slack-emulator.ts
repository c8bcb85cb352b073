// A local Slack Web API emulator for adapter tests: real @slack/web-api and Bolt talk to it over HTTP.
import { EventEmitter } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export const SLACK_DEFAULTS = Object.freeze({
  botToken: "xoxb-test",
  teamId: "T0TESTTEAM",
  teamName: "Baton Test",
  teamDomain: "baton-test",
  botUserId: "U0BATONBOT",
  botId: "B0BATONBOT",
  appId: "A0BATONAPP",
  botName: "baton",
});

export type SlackArgs = Record<string, unknown>;
export type SlackCall = { method: string; args: SlackArgs; at: number; failed?: string };
export type SlackUser = {
  id: string;
  name: string;
  realName?: string;
  tz?: string;
  isBot?: boolean;
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
/** `retryAfter` answers HTTP 429 with Retry-After; `status` other than 200 answers that status. */
export type SlackFailure = { error: string; retryAfter?: number; status?: number };
export type SlackEmulatorOptions = Partial<typeof SLACK_DEFAULTS> & {
  users?: SlackUser[];
  usergroups?: SlackUsergroup[];
};

type Hold = {
  method: string;
  predicate: (c: SlackCall) => boolean;
  caught: boolean;
  arrive: (call: SlackCall) => void;
  released: Promise<void>;
};
type Answer = { status?: number; headers?: Record<string, string>; body: Record<string, unknown> };
type Handler = (args: SlackArgs) => Record<string, unknown>;

// Web API clients form-encode nested values as JSON strings; these are the ones we read back.
const JSON_ARGS = new Set(["blocks", "attachments", "view", "metadata", "user_auth_blocks"]);
// Messages are kept to this many per history page at most, as Slack documents.
const HISTORY_LIMIT_MAX = 999;

export async function startSlackEmulator(options: SlackEmulatorOptions = {}) {
  const cfg = { ...SLACK_DEFAULTS, ...options };
  const calls: SlackCall[] = [];
  const messages: SlackMessage[] = [];
  const ephemerals: SlackArgs[] = [];
  const views = new Map<string, Record<string, unknown>>();
  const homeViews = new Map<string, Record<string, unknown>>();
  const dms = new Map<string, string>();
  const users = new Map((options.users ?? []).map((u) => [u.id, u]));
  const groups = new Map((options.usergroups ?? []).map((g) => [g.id, g]));
  const failures = new Map<string, SlackFailure[]>();
  const holds: Hold[] = [];
  const emitter = new EventEmitter();
  let lastTsMicros = 0;
  let viewCounter = 0;

  // A ts is the Unix time Slack took the message, in microseconds, and unique in its channel.
  const nextTs = (): string => {
    lastTsMicros = Math.max(Date.now() * 1000, lastTsMicros + 100);
    return `${Math.floor(lastTsMicros / 1e6)}.${String(lastTsMicros % 1e6).padStart(6, "0")}`;
  };
  const dmFor = (userId: string): string => {
    let id = dms.get(userId);
    if (!id) {
      id = `D${String(dms.size + 1).padStart(9, "0")}`;
      dms.set(userId, id);
    }
    return id;
  };
  const resolveChannel = (channel: string): string =>
    /^[UW]/.test(channel) ? dmFor(channel) : channel;
  const findMessage = (channel: string, ts: string) =>
    messages.find((m) => m.channel === channel && m.ts === ts);
  const threadOf = (channel: string, threadTs: string) =>
    messages
      .filter((m) => m.channel === channel && (m.ts === threadTs || m.thread_ts === threadTs))
      .sort((a, b) => a.ts.localeCompare(b.ts));

  const addMessage = (m: {
    channel: string;
    user: string;
    text?: string;
    ts?: string;
    threadTs?: string;
    blocks?: unknown;
  }): SlackMessage => {
    const stored: SlackMessage = {
      type: "message",
      channel: resolveChannel(m.channel),
      ts: m.ts ?? nextTs(),
      user: m.user,
      text: m.text ?? "",
      ...(m.threadTs ? { thread_ts: m.threadTs } : {}),
      ...(m.blocks ? { blocks: m.blocks } : {}),
    };
    messages.push(stored);
    return stored;
  };

  const userInfo = (id: string) => {
    const known = users.get(id);
    const isBot = id === cfg.botUserId || known?.isBot === true;
    const name = known?.name ?? (id === cfg.botUserId ? cfg.botName : id.toLowerCase());
    const realName = known?.realName ?? name;
    const tz = known?.tz ?? "UTC";
    return {
      id,
      team_id: cfg.teamId,
      name,
      deleted: false,
      real_name: realName,
      tz,
      tz_label: tz,
      tz_offset: tzOffsetSeconds(tz),
      is_bot: isBot,
      is_admin: false,
      profile: { real_name: realName, display_name: name, ...(isBot ? { bot_id: cfg.botId } : {}) },
    };
  };

  const storeView = (args: SlackArgs, id: string) => {
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
    views.set(id, stored);
    return stored;
  };
  const newViewId = () => `V${String(++viewCounter).padStart(9, "0")}`;
  const requireArgs = (args: SlackArgs, ...names: string[]) => {
    for (const n of names)
      if (args[n] === undefined || args[n] === "") throw new SlackErr("invalid_arguments");
  };

  const botMessageFields = (args: SlackArgs) => ({
    bot_id: cfg.botId,
    ...pick(args, ["username", "icon_emoji", "icon_url", "blocks", "attachments", "metadata"]),
  });

  const openView: Handler = (args) => {
    requireArgs(args, "trigger_id", "view");
    return { view: storeView(args, newViewId()) };
  };
  const handlers: Record<string, Handler> = {
    "views.open": openView,
    "views.push": openView,
    "auth.test": () => ({
      url: `https://${cfg.teamDomain}.slack.com/`,
      team: cfg.teamName,
      user: cfg.botName,
      team_id: cfg.teamId,
      user_id: cfg.botUserId,
      bot_id: cfg.botId,
      is_enterprise_install: false,
    }),
    "chat.postMessage": (args) => {
      requireArgs(args, "channel");
      if (!args.text && !args.blocks && !args.attachments) throw new SlackErr("no_text");
      const message = addMessage({
        channel: String(args.channel),
        user: cfg.botUserId,
        text: str(args.text),
        threadTs: str(args.thread_ts),
      });
      Object.assign(message, botMessageFields(args));
      const { channel, ...shown } = message;
      return {
        channel,
        ts: message.ts,
        message: { ...shown, app_id: cfg.appId, team: cfg.teamId },
      };
    },
    "chat.update": (args) => {
      requireArgs(args, "channel", "ts");
      const message = findMessage(resolveChannel(String(args.channel)), String(args.ts));
      if (!message) throw new SlackErr("message_not_found");
      if (message.user !== cfg.botUserId) throw new SlackErr("cant_update_message");
      Object.assign(message, pick(args, ["text", "blocks", "attachments", "metadata"]));
      message.edited = { user: cfg.botUserId, ts: nextTs() };
      const { channel, ...shown } = message;
      return { channel, ts: message.ts, text: message.text ?? "", message: shown };
    },
    "chat.postEphemeral": (args) => {
      requireArgs(args, "channel", "user");
      const messageTs = nextTs();
      ephemerals.push({ ...args, message_ts: messageTs });
      return { message_ts: messageTs };
    },
    "chat.getPermalink": (args) => {
      requireArgs(args, "channel", "message_ts");
      const channel = String(args.channel);
      const ts = String(args.message_ts);
      const parent = findMessage(channel, ts)?.thread_ts;
      const thread = parent && parent !== ts ? `?thread_ts=${parent}&cid=${channel}` : "";
      const path = `archives/${channel}/p${ts.replace(".", "")}${thread}`;
      return { channel, permalink: `https://${cfg.teamDomain}.slack.com/${path}` };
    },
    "users.info": (args) => {
      requireArgs(args, "user");
      return { user: userInfo(String(args.user)) };
    },
    "usergroups.users.list": (args) => {
      const group = groups.get(String(args.usergroup));
      if (!group) throw new SlackErr("no_such_subteam");
      return { users: [...group.users] };
    },
    "conversations.open": (args) => {
      const ids = String(args.users ?? "")
        .split(",")
        .filter(Boolean);
      if (args.channel) return { channel: { id: String(args.channel) }, already_open: true };
      if (ids.length !== 1)
        throw new SlackErr(ids.length ? "not_implemented" : "users_list_not_supplied");
      const userId = ids[0] as string;
      const alreadyOpen = dms.has(userId);
      return { no_op: alreadyOpen, already_open: alreadyOpen, channel: { id: dmFor(userId) } };
    },
    "conversations.replies": (args) => {
      requireArgs(args, "channel", "ts");
      const thread = threadOf(resolveChannel(String(args.channel)), String(args.ts));
      if (thread.length === 0) throw new SlackErr("thread_not_found");
      const limit = Number(args.limit ?? 1000);
      return {
        messages: thread.slice(0, limit).map((m) => shownMessage(m, args)),
        has_more: thread.length > limit,
        response_metadata: { next_cursor: "" },
      };
    },
    // Newest first; thread replies are not in a channel's history, their parents are. `oldest` and
    // `latest` are exclusive unless `inclusive`; the cursor is opaque (here: the next page's ts).
    "conversations.history": (args) => {
      requireArgs(args, "channel");
      const channel = resolveChannel(String(args.channel));
      const inclusive = isTrue(args.inclusive);
      const oldest = str(args.oldest);
      const latest = str(args.latest);
      const inRange = (ts: string) =>
        (oldest === undefined || compareTs(ts, oldest) > (inclusive ? -1 : 0)) &&
        (latest === undefined || compareTs(ts, latest) < (inclusive ? 1 : 0));
      const timeline = messages
        .filter((m) => m.channel === channel && (!m.thread_ts || m.thread_ts === m.ts))
        .filter((m) => inRange(m.ts))
        .sort((a, b) => compareTs(b.ts, a.ts));
      const limit = Math.min(Math.max(Number(args.limit ?? 100) || 100, 1), HISTORY_LIMIT_MAX);
      let start = 0;
      if (str(args.cursor)) {
        const from = /^next_ts:(\d+\.\d+)$/.exec(
          Buffer.from(String(args.cursor), "base64").toString("utf8"),
        )?.[1];
        if (!from) throw new SlackErr("invalid_cursor");
        start = timeline.findIndex((m) => compareTs(m.ts, from) <= 0);
        if (start < 0) start = timeline.length;
      }
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
    // Lenient: an unknown view_id is created, since tests may act on modals they never opened here.
    "views.update": (args) => {
      requireArgs(args, "view");
      const byExternal = [...views.values()].find(
        (v) => args.external_id && v.external_id === args.external_id,
      );
      const id = str(args.view_id) ?? (byExternal?.id as string | undefined);
      if (!id) throw new SlackErr("not_found");
      return { view: storeView(args, id) };
    },
    "views.publish": (args) => {
      requireArgs(args, "user_id", "view");
      const view = storeView(args, newViewId());
      homeViews.set(String(args.user_id), view);
      return { view };
    },
  };

  const answer = (method: string, args: SlackArgs, token: string | undefined): Answer => {
    if (!token) return { body: { ok: false, error: "not_authed" } };
    if (token !== cfg.botToken) return { body: { ok: false, error: "invalid_auth" } };
    const failure = failures.get(method)?.shift();
    if (failure) {
      if (failure.retryAfter !== undefined) {
        const headers = { "retry-after": String(failure.retryAfter) };
        return { status: 429, headers, body: { ok: false, error: failure.error } };
      }
      return { status: failure.status ?? 200, body: { ok: false, error: failure.error } };
    }
    const handler = handlers[method];
    if (!handler) return { body: { ok: true } };
    try {
      return { body: { ok: true, ...handler(args) } };
    } catch (err) {
      if (err instanceof SlackErr) return { body: { ok: false, error: err.code } };
      throw err;
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => send(res, 500, {}, { ok: false, error: String(err) }));
  });
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const raw = await readBody(req);
    const args = await parseArgs(raw, req.headers["content-type"], url.searchParams);
    const apiMethod = /^\/api\/([\w.]+)$/.exec(url.pathname)?.[1];
    // Anything outside /api/ is a response_url (Bolt's respond() posts JSON there).
    const method = apiMethod ?? "response_url";
    if (!apiMethod) args.response_path = url.pathname;
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    const token = bearer ?? str(args.token);
    const { token: _t, ...recorded } = args;
    const result = apiMethod ? answer(method, args, token) : { body: { ok: true } };
    const failed = result.body.ok === false ? String(result.body.error) : undefined;
    const call: SlackCall = {
      method,
      args: recorded,
      at: Date.now(),
      ...(failed ? { failed } : {}),
    };
    calls.push(call);
    emitter.emit("call", call);
    const hold = holds.find((h) => h.method === method && !h.caught && h.predicate(call));
    if (hold) {
      hold.caught = true;
      hold.arrive(call);
      await hold.released;
    }
    send(res, result.status ?? 200, result.headers ?? {}, result.body);
  };

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const origin = `http://127.0.0.1:${port}`;

  return {
    /** Base for WebClient's `slackApiUrl`. */
    url: `${origin}/api/`,
    origin,
    /** A response_url to put in interaction payloads; posts to it are recorded as "response_url". */
    responseUrl: `${origin}/actions/${cfg.teamId}/response`,
    config: cfg,
    calls,
    messages,
    ephemerals,
    views,
    homeViews,
    callsTo: (method: string) => calls.filter((c) => c.method === method),
    /** Whole channel when threadTs is omitted; else the thread root and its replies, oldest first. */
    messagesIn: (channel: string, threadTs?: string) =>
      threadTs
        ? threadOf(resolveChannel(channel), threadTs)
        : messages.filter((m) => m.channel === resolveChannel(channel)),
    /** Seeds a human message (e.g. the one an app_mention event refers to) with a ts in sequence. */
    addMessage,
    setUser: (user: SlackUser) => void users.set(user.id, user),
    setUsergroup: (group: SlackUsergroup) => void groups.set(group.id, group),
    dmChannelFor: dmFor,
    failNext(method: string, failure: SlackFailure, times = 1) {
      const queue = failures.get(method) ?? [];
      for (let i = 0; i < times; i++) queue.push(failure);
      failures.set(method, queue);
    },
    /**
     * The next call to `method` matching `predicate` is carried out (a message is stored and seen)
     * but its answer waits for `release()`: Slack took the request, and its caller does not know yet.
     */
    holdAnswer(method: string, predicate: (c: SlackCall) => boolean = () => true) {
      let arrive: (call: SlackCall) => void = () => {};
      let release: () => void = () => {};
      const arrived = new Promise<SlackCall>((resolve) => {
        arrive = resolve;
      });
      const released = new Promise<void>((resolve) => {
        release = resolve;
      });
      holds.push({ method, predicate, caught: false, arrive, released });
      return { arrived, release };
    },
    /** Resolves with the first call (past or future) to `method` matching `predicate`. */
    waitForCall(
      method: string,
      predicate: (c: SlackCall) => boolean = () => true,
      timeoutMs = 5000,
    ) {
      const match = (c: SlackCall) => c.method === method && predicate(c);
      const seen = calls.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise<SlackCall>((resolve, reject) => {
        const onCall = (c: SlackCall) => {
          if (!match(c)) return;
          clearTimeout(timer);
          emitter.off("call", onCall);
          resolve(c);
        };
        const timer = setTimeout(() => {
          emitter.off("call", onCall);
          reject(new Error(`no ${method} call within ${timeoutMs} ms`));
        }, timeoutMs);
        emitter.on("call", onCall);
      });
    },
    /** Forgets calls, messages, views and pending failures; keeps users and groups. */
    reset() {
      for (const list of [calls, messages, ephemerals] as unknown[][]) list.length = 0;
      for (const map of [views, homeViews, dms, failures] as Map<unknown, unknown>[]) map.clear();
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

export type SlackEmulator = Awaited<ReturnType<typeof startSlackEmulator>>;

class SlackErr extends Error {
  readonly code: string;
  constructor(code: string) {
    super(code);
    this.code = code;
  }
}

function send(res: ServerResponse, status: number, headers: Record<string, string>, body: unknown) {
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", ...headers });
  res.end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function parseArgs(
  raw: Buffer,
  contentType = "",
  query: URLSearchParams,
): Promise<SlackArgs> {
  const args: SlackArgs = Object.fromEntries(query);
  if (contentType.includes("application/json") && raw.length > 0) {
    Object.assign(args, JSON.parse(raw.toString("utf8")));
  } else if (contentType.includes("application/x-www-form-urlencoded")) {
    Object.assign(args, Object.fromEntries(new URLSearchParams(raw.toString("utf8"))));
  } else if (contentType.includes("multipart/form-data")) {
    const form = await new Response(raw, { headers: { "content-type": contentType } }).formData();
    for (const [key, value] of form)
      args[key] = typeof value === "string" ? value : `<file ${value.name}>`;
  }
  for (const key of JSON_ARGS) {
    const value = args[key];
    if (typeof value === "string" && /^\s*[[{]/.test(value)) args[key] = JSON.parse(value);
  }
  return args;
}

/** A stored message as the reading methods return it: metadata only when asked for. */
function shownMessage({ channel: _c, ...message }: SlackMessage, args: SlackArgs) {
  if (isTrue(args.include_all_metadata)) return message;
  const { metadata: _m, ...shown } = message;
  return shown;
}

/** Form-encoded booleans arrive as "true" or "1". */
function isTrue(value: unknown): boolean {
  return value === true || value === "true" || value === "1" || value === 1;
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

function asRecord(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {};
}

function str(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

function pick(args: SlackArgs, keys: string[]): SlackArgs {
  return Object.fromEntries(keys.filter((k) => args[k] !== undefined).map((k) => [k, args[k]]));
}
