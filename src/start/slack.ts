import type { Config } from "../config/env.ts";
import { type HttpRoute, serveRoutes } from "../http/operator-routes.ts";
import { assertPortFree } from "../http/port.ts";
import type { RuntimeDeps } from "../runtime/deps.ts";
import {
  type BoltApp,
  createSlackApp,
  initSlackApp,
  noWaitClient,
  postingClient,
  startSlackApp,
  stopSlackApp,
} from "../slack/app.ts";
import { createSlackChatSurface } from "../slack/chat-surface.ts";
import type { SlackHandlers } from "../slack/handlers.ts";
import { createSlackHandlers } from "../slack/wire-handlers.ts";
import type { StopSequence } from "./stops.ts";

export interface SlackConnection {
  app: BoltApp;
  handlers: SlackHandlers;
  /** A client whose calls fail at a 429 rather than wait it out. */
  noWait: ReturnType<typeof noWaitClient>;
}

/**
 * Bolt's app with its listeners, its token checked, and `deps.chat` posting through it. It takes no
 * events until `listen`.
 */
export async function connectSlack(
  config: Config,
  deps: RuntimeDeps,
  routes: HttpRoute[],
): Promise<SlackConnection> {
  const { log } = deps;
  // `app` is made below, with the handlers: the id is asked of it when a listener first needs it.
  const botUserId = botUserIdOf(() => app);
  const handlers = createSlackHandlers(deps, botUserId);
  const app = createSlackApp(
    {
      botToken: config.slack.botToken,
      signingSecret: config.slack.signingSecret,
      port: config.http.port,
      timeoutMs: config.slack.timeoutMs,
      ...(config.slack.appToken && { appToken: config.slack.appToken }),
      ...(config.slack.apiUrl && { apiUrl: config.slack.apiUrl }),
      log,
      routes,
    },
    handlers,
  );
  const { workspaceUrl, self } = await initSlackApp(
    app,
    config.slack.apiUrl ? "SLACK_BOT_TOKEN and SLACK_API_URL" : "SLACK_BOT_TOKEN and the network",
    log,
  );
  const noWait = noWaitClient(app, log, config.slack.timeoutMs);
  deps.chat = createSlackChatSurface(app.client, {
    log,
    poster: postingClient(app, log, config.slack.timeoutMs),
    noWaitClient: noWait,
    self,
    ...(workspaceUrl && { workspaceUrl }),
  });
  return { app, handlers, noWait };
}

/** The bot's user id, asked of Slack when first needed. */
function botUserIdOf(app: () => BoltApp): () => Promise<string> {
  let botUserId: Promise<string> | undefined;
  return () => {
    botUserId ??= app()
      .client.auth.test()
      .then(
        (r) => r.user_id ?? "",
        (error: unknown) => {
          // Not kept: the next event asks again, rather than every event failing until a restart.
          botUserId = undefined;
          throw error;
        },
      );
    return botUserId;
  };
}

/**
 * Slack's events by HTTP or over Socket Mode, with the operator's routes on PORT; or, on a
 * worker-only replica, those routes alone. Returns the port.
 */
export async function listen(
  config: Config,
  app: BoltApp,
  routes: readonly HttpRoute[],
  stops: StopSequence,
): Promise<number> {
  const port = config.http.port;
  await assertPortFree(port, "PORT");
  if (config.http.enabled) {
    // The operator's routes beside Slack's requests (HTTP mode), or alone (Socket Mode).
    await startSlackApp(
      app,
      port,
      config.slack.appToken
        ? {
            appToken: config.slack.appToken,
            ...(config.slack.apiUrl && { apiUrl: config.slack.apiUrl }),
            timeoutMs: config.slack.timeoutMs,
          }
        : undefined,
    );
    stops.add((waitMs) => stopSlackApp(app, waitMs));
  } else {
    // BATON_HTTP=0, a worker-only replica: it takes no events, by HTTP or over Socket Mode.
    stops.add(await serveRoutes(port, routes));
  }
  return port;
}
