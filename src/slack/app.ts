import type { IncomingMessage, ServerResponse } from "node:http";
import bolt, { type webApi as WebApi } from "@slack/bolt";
import { within } from "../core/duration.ts";
import { ConfigError } from "../errors.ts";
import { leanFetch, proxyHint } from "../http/fetch.ts";
import type { Logger } from "../log.ts";
import { type BotIdentity, identityOf } from "./find-posted.ts";
import type { SlackHandlers } from "./handlers.ts";
import { registerActionListeners } from "./listeners/actions.ts";
import { registerCommandListeners } from "./listeners/commands.ts";
import { registerEventListeners } from "./listeners/events.ts";
import { registerFailureReplies } from "./listeners/failures.ts";
import { missingScopes, missingScopesWords } from "./scopes.ts";
import {
  acknowledgeWhenProcessed,
  finishEnvelopes,
  reconnectAfterRefusals,
} from "./socket-mode.ts";
import { SlackDeliveryError, toBatonError } from "./web-api-errors.ts";

const { App, HTTPReceiver, LogLevel, SocketModeReceiver, webApi } = bolt;
export type BoltApp = InstanceType<typeof App>;

/**
 * Verifies the bot token with Slack (auth.test); fails with what to check, and warns of scopes the
 * token lacks (Slack names those granted in its `x-oauth-scopes` header). Returns the workspace's
 * URL (`https://acme.slack.com/`), which thread links are made of, and Baton's own ids there.
 */
export async function initSlackApp(
  app: BoltApp,
  hint: string,
  log: Logger,
): Promise<{ workspaceUrl?: string; self: BotIdentity }> {
  try {
    await app.init();
    const identity = await app.client.auth.test();
    const self = identityOf(identity);
    const granted = identity.response_metadata?.scopes;
    const missing = granted && missingScopes(granted);
    if (missing && missing.length > 0) log.warn({ missing }, missingScopesWords(missing));
    return identity.url ? { workspaceUrl: identity.url, self } : { self };
  } catch (error) {
    const code =
      (error as { data?: { error?: string }; code?: string }).data?.error ??
      (error as { code?: string }).code;
    const unreachable = code === "slack_webapi_request_error" || code === "slack_webapi_http_error";
    const what = unreachable
      ? "Slack could not be reached"
      : `Slack refused the bot token (${code ?? (error as Error).message})`;
    throw new ConfigError(`${what}: check ${hint}${unreachable ? proxyHint() : ""}.`, {
      cause: error,
    });
  }
}

/**
 * Starts taking Slack's requests: over HTTP on `port`, or over Socket Mode with `socket`'s app-level
 * token. The Socket Mode client retries what may pass and throws only what Slack calls unrecoverable
 * (`invalid_auth`): a token without the connections:write scope (`missing_scope`), or a bot token
 * in its place (`not_allowed_token_type`), it would retry for ever. So the token is tried once
 * first: a refusal stops the start with what to set, and frees the port.
 */
export async function startSlackApp(
  app: BoltApp,
  port: number,
  socket?: { appToken: string; apiUrl?: string; timeoutMs: number },
): Promise<void> {
  if (!socket) {
    await app.start(port);
    return;
  }
  // Nothing is started before the token passes: Bolt's stop would log, as an error, that it could
  // not close a server that never opened.
  await tryAppToken(socket).catch((error: unknown) => {
    throw socketModeRefused(error);
  });
  try {
    await app.start();
  } catch (error) {
    await app.stop().catch(() => undefined);
    throw socketModeRefused(error);
  }
}

function socketModeRefused(error: unknown): ConfigError {
  const code = (error as { data?: { error?: string } }).data?.error;
  const what =
    code === undefined
      ? "Slack could not be reached for Socket Mode"
      : `Slack refused the app-level token (${code})`;
  return new ConfigError(
    `${what}: check SLACK_APP_TOKEN (an app-level token with the connections:write scope, under Basic Information > App-Level Tokens), or unset it to use HTTP mode.`,
    { cause: error },
  );
}

/** Throws Slack's refusal of the app-level token; anything that may pass is left to the client. */
async function tryAppToken(socket: {
  appToken: string;
  apiUrl?: string;
  timeoutMs: number;
}): Promise<void> {
  const client = new webApi.WebClient(socket.appToken, {
    ...(socket.apiUrl && { slackApiUrl: socket.apiUrl }),
    fetch: leanFetch(),
    retryConfig: { retries: 0 },
    rejectRateLimitedCalls: true,
    logLevel: LogLevel.ERROR,
    timeout: socket.timeoutMs,
  });
  try {
    await client.apps.connections.open({});
  } catch (error) {
    // Slack's own trouble (a 5xx, internal_error, a 429) is the Socket Mode client's to retry.
    if (toBatonError("apps.connections.open", error) instanceof SlackDeliveryError) throw error;
  }
}

export interface SlackAppOptions {
  botToken: string;
  signingSecret: string;
  appToken?: string;
  apiUrl?: string;
  /** The HTTP port: Slack's requests in HTTP mode; /metrics and /healthz in both modes. */
  port: number;
  /** How long one Web API call may take before it fails (SLACK_TIMEOUT_SECONDS). */
  timeoutMs: number;
  log: Logger;
  /** Extra GET routes on the HTTP server (/metrics, /healthz). */
  routes?: { path: string; handler: (req: IncomingMessage, res: ServerResponse) => void }[];
}

/**
 * Bolt over HTTP at /slack/events (events, interactivity and commands share it), or Socket Mode
 * when an app token is set. Receivers do transport only; listeners parse and call the core.
 */
export function createSlackApp(options: SlackAppOptions, handlers: SlackHandlers): BoltApp {
  const logger = boltLogger(options.log);
  const clientOptions = {
    ...(options.apiUrl && { slackApiUrl: options.apiUrl }),
    retryConfig: { retries: 3 },
    // Bolt's respond() posts to a response_url with this fetch, with no timeout of its own: the
    // dispatcher's (SLACK_TIMEOUT_SECONDS and a second) ends one Slack never answers.
    fetch: leanFetch({ timeoutMs: options.timeoutMs }),
    timeout: options.timeoutMs,
  };
  const receiver = options.appToken
    ? new SocketModeReceiver({
        appToken: options.appToken,
        logger,
        customRoutes: routes(options),
        // In Socket Mode, /metrics and /healthz are served on this port by the receiver.
        // Its own client (apps.connections.open) keeps Socket Mode's retries, made for reconnecting.
        installerOptions: {
          port: options.port,
          clientOptions: {
            ...(options.apiUrl && { slackApiUrl: options.apiUrl }),
            fetch: leanFetch(),
            timeout: options.timeoutMs,
          },
        },
      })
    : new HTTPReceiver({
        signingSecret: options.signingSecret,
        endpoints: "/slack/events",
        // Events are stored and queued before Slack gets its 200, so an acknowledged event is never lost.
        processBeforeResponse: true,
        customRoutes: routes(options),
        logger,
      });
  const app = new App({
    token: options.botToken,
    receiver,
    logger,
    clientOptions,
    ignoreSelf: true,
    // Bolt's in-memory conversation store runs on every event; the task's state is in Postgres.
    convoStore: false,
    // The caller awaits app.init(), so a bad token or an unreachable Slack stops the start with a
    // clear message instead of an unhandled rejection later.
    deferInitialization: true,
  });
  if (receiver instanceof SocketModeReceiver) {
    acknowledgeWhenProcessed(receiver, app, options.log);
    reconnectAfterRefusals(receiver, options.log);
  }
  // For the listeners' calls that must not wait out a 429: Bolt's client sleeps it out inside the
  // call (pausing its other calls meanwhile), past an event's 3 s or a form's trigger_id. What
  // Slack must not get twice (words to a person, a form) goes through `posting`, which also
  // retries nothing (see postingClient).
  const noWait = noWaitClient(app, options.log, options.timeoutMs);
  const posting = postingClient(app, options.log, options.timeoutMs);
  registerFailureReplies(app, options.log, posting);
  registerEventListeners(app, handlers, noWait);
  registerActionListeners(app, handlers, posting);
  registerCommandListeners(app, handlers);
  app.error(async (error) => {
    options.log.error({ err: error.original ?? error, code: error.code }, "slack listener failed");
    // Rethrown, Bolt answers 500 and Slack retries: a message we could not store is not lost,
    // and the retry is deduplicated by its event id.
    throw error;
  });
  return app;
}

/**
 * Stops taking Slack's requests and lets those under way finish: a decision still committing at
 * shutdown is acknowledged and gets its card update before the database closes. In Socket Mode
 * the connection stays open until then (`waitMs` at most), or their acknowledgements would have
 * nowhere to go; one cut short is not acknowledged, and Slack sends it again.
 */
export async function stopSlackApp(app: BoltApp, waitMs: number): Promise<void> {
  const started = performance.now();
  await finishEnvelopes(app, waitMs);
  // Over HTTP, stop() closes the server, which waits for every request under way: one stuck on a
  // silent database would hold the stop. One cut short is not answered, and Slack sends it again.
  await within(app.stop(), Math.max(0, waitMs - (performance.now() - started)));
}

function routes(options: SlackAppOptions) {
  return (options.routes ?? []).map((r) => ({ path: r.path, method: ["GET"], handler: r.handler }));
}

/**
 * A client for the calls Slack must not get twice, which retries nothing: chat.postMessage,
 * chat.postEphemeral, and views.open (its trigger_id is single-use). A 5xx or a dropped connection
 * may come after Slack took the call, and the client's own retry would post the message or show
 * the words twice. A post's failure goes back to the outbox instead, which looks in the thread for
 * the message before it sends it again; words to a person that may not have gone are logged.
 * A 429 (Slack stored nothing) fails at once with its Retry-After, as with `noWaitClient`.
 */
export function postingClient(app: BoltApp, log: Logger, timeoutMs: number): WebApi.WebClient {
  return rateLimitRejectingClient(app, log, 0, timeoutMs);
}

/**
 * A client that fails a rate-limited call at once, with Slack's Retry-After, where Bolt's client
 * sleeps it out inside the call (and pauses its other calls the while). A run waits it out itself,
 * keeping its lease; other deliverers leave the row to the next sweep; App Home shows a channel as
 * unknown for now rather than keep the person waiting, and a Home Slack did not take is published
 * at the next opening; a late mention's thread is read by a job after the wait, Slack already
 * answered. Other failures are retried as Bolt's are: only for calls Slack may get twice.
 */
export function noWaitClient(app: BoltApp, log: Logger, timeoutMs: number): WebApi.WebClient {
  return rateLimitRejectingClient(app, log, 3, timeoutMs);
}

/**
 * `timeoutMs` (SLACK_TIMEOUT_SECONDS): without one, a call to a Slack that went silent (a dropped
 * connection) would wait out undici's 300 s, its run stuck the while. A post that times out may
 * have reached Slack: it goes back to the outbox, which looks for it in the thread before sending
 * it again.
 */
function rateLimitRejectingClient(app: BoltApp, log: Logger, retries: number, timeoutMs: number) {
  return new webApi.WebClient(app.client.token, {
    slackApiUrl: app.client.slackApiUrl,
    logger: boltLogger(log),
    fetch: leanFetch(),
    retryConfig: { retries },
    rejectRateLimitedCalls: true,
    timeout: timeoutMs,
  });
}

function boltLogger(log: Logger) {
  const child = log.child({ component: "bolt" });
  let level = LogLevel.INFO;
  // The Web API client logs each call's request and answer at debug level: join them only if shown.
  const at =
    (name: "debug" | "info" | "warn" | "error") =>
    (...msg: unknown[]) => {
      if (child.isLevelEnabled(name)) child[name](msg.map(String).join(" "));
    };
  return {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    setLevel: (l: typeof level) => {
      level = l;
    },
    getLevel: () => level,
    setName: () => {},
  };
}
