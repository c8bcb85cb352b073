// A local Slack Web API emulator for adapter tests: real @slack/web-api and Bolt talk to it over HTTP.
// The methods it answers are in ./slack-emulator/methods.ts; this file serves them, records every
// call, and lets a test make calls fail or wait.
import { EventEmitter } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { BOT_SCOPES } from "../../src/slack/scopes.ts";
import { slackMethods } from "./slack-emulator/methods.ts";
import { socketModeServer } from "./slack-emulator/socket-mode.ts";
import {
  addMessage,
  createEmulatorState,
  dmFor,
  type NewMessage,
  resolveChannel,
  type SlackArgs,
  type SlackEmulatorOptions,
  type SlackUser,
  type SlackUsergroup,
  threadOf,
} from "./slack-emulator/state.ts";
import { parseArgs, readBody, SlackErr, send, str } from "./slack-emulator/wire.ts";

export {
  SLACK_DEFAULTS,
  type SlackArgs,
  type SlackEmulatorOptions,
  type SlackMessage,
  type SlackUser,
  type SlackUsergroup,
} from "./slack-emulator/state.ts";

export type SlackCall = { method: string; args: SlackArgs; at: number; failed?: string };
/** `retryAfter` answers HTTP 429 with Retry-After; `status` other than 200 answers that status. */
/**
 * How the next call fails: a Slack error, a 429 with Retry-After, an HTTP status; `stored`: the
 * call is carried out all the same (a message is posted) and only its answer is lost.
 */
export type SlackFailure = {
  error: string;
  /** With `missing_scope`: the scope the call needs, as Slack names it. */
  needed?: string;
  retryAfter?: number;
  status?: number;
  stored?: boolean;
};

/**
 * Slack refuses (`msg_blocks_too_long`) a message whose blocks hold more than about 12,000
 * characters of text in all; the limit is undocumented (slackapi/bolt-js#2509, #2867), so this
 * counts every `text` string in the blocks, labels and options too, and refuses past 12,000.
 */
export const BLOCKS_TEXT_MAX = 12_000;
const SIZED_METHODS = new Set(["chat.postMessage", "chat.update", "chat.postEphemeral"]);

/** Every `text` string anywhere in `blocks`, summed: what the emulator holds against the limit. */
export function blocksTextChars(blocks: unknown): number {
  if (Array.isArray(blocks)) return blocks.reduce((sum: number, b) => sum + blocksTextChars(b), 0);
  if (typeof blocks !== "object" || blocks === null) return 0;
  return Object.entries(blocks).reduce(
    (sum: number, [key, value]) =>
      sum + (key === "text" && typeof value === "string" ? value.length : blocksTextChars(value)),
    0,
  );
}

type Hold = {
  method: string;
  predicate: (c: SlackCall) => boolean;
  caught: boolean;
  arrive: (call: SlackCall) => void;
  released: Promise<void>;
};
type Answer = { status?: number; headers?: Record<string, string>; body: Record<string, unknown> };

export async function startSlackEmulator(options: SlackEmulatorOptions = {}) {
  const state = createEmulatorState(options);
  const { cfg, messages, ephemerals, views, homeViews, dms, users, groups } = state;
  const calls: SlackCall[] = [];
  const failures = new Map<string, SlackFailure[]>();
  const holds: Hold[] = [];
  const emitter = new EventEmitter();

  const answer = (method: string, args: SlackArgs, token: string | undefined): Answer => {
    if (!token) return { body: { ok: false, error: "not_authed" } };
    // Only apps.connections.open takes the app-level token, and it takes no other.
    const appLevel = method === "apps.connections.open";
    if (token !== (appLevel ? cfg.appToken : cfg.botToken)) {
      const error = token === cfg.appToken || appLevel ? "not_allowed_token_type" : "invalid_auth";
      return { body: { ok: false, error } };
    }
    const failure = failures.get(method)?.shift();
    if (failure?.stored) slackMethods[method]?.(state, args);
    if (failure) {
      if (failure.retryAfter !== undefined) {
        const headers = { "retry-after": String(failure.retryAfter) };
        return { status: 429, headers, body: { ok: false, error: failure.error } };
      }
      const needed = failure.needed === undefined ? {} : { needed: failure.needed };
      return {
        status: failure.status ?? 200,
        body: { ok: false, error: failure.error, ...needed },
      };
    }
    if (appLevel) return { body: { ok: true, url: socketMode.linkUrl(origin) } };
    if (SIZED_METHODS.has(method) && blocksTextChars(args.blocks) > BLOCKS_TEXT_MAX)
      return { body: { ok: false, error: "msg_blocks_too_long" } };
    const handler = slackMethods[method];
    if (!handler) return { body: { ok: true } };
    try {
      return { body: { ok: true, ...handler(state, args) } };
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
    // Slack names the token's scopes in every Web API answer.
    const scopes: Record<string, string> = apiMethod
      ? { "x-oauth-scopes": (options.scopes ?? BOT_SCOPES).join(",") }
      : {};
    send(res, result.status ?? 200, { ...scopes, ...result.headers }, result.body);
  };

  const socketMode = socketModeServer(server, cfg.appId);
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
    /** Socket Mode: wait for the app's connection, send it envelopes, see its acknowledgements. */
    socketMode: {
      connected: socketMode.connected,
      send: socketMode.send,
      drop: socketMode.drop,
    },
    calls,
    messages,
    ephemerals,
    views,
    homeViews,
    callsTo: (method: string) => calls.filter((c) => c.method === method),
    /** Whole channel when threadTs is omitted; else the thread root and its replies, oldest first. */
    messagesIn: (channel: string, threadTs?: string) =>
      threadTs
        ? threadOf(state, resolveChannel(state, channel), threadTs)
        : messages.filter((m) => m.channel === resolveChannel(state, channel)),
    /** Seeds a human message (e.g. the one an app_mention event refers to) with a ts in sequence. */
    addMessage: (m: NewMessage) => addMessage(state, m),
    setUser: (user: SlackUser) => void users.set(user.id, user),
    setUsergroup: (group: SlackUsergroup) => void groups.set(group.id, group),
    /** A channel whose members conversations.members lists from now on. */
    setChannel: (channel: { id: string; members: string[] }) =>
      void state.channelMembers.set(channel.id, [...channel.members]),
    dmChannelFor: (userId: string) => dmFor(state, userId),
    /** Archives a channel: posts and updates in it are refused with `is_archived`, as Slack does. */
    archiveChannel: (channel: string) => void state.archived.add(channel),
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
      // As long as `until` waits: under CI's concurrent files a turn may take seconds.
      timeoutMs = 15_000,
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
        socketMode.close();
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

export type SlackEmulator = Awaited<ReturnType<typeof startSlackEmulator>>;
