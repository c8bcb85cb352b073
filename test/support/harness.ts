import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { afterEach } from "node:test";
import { fileURLToPath } from "node:url";
import { type Baton, startBaton } from "../../src/app.ts";
import { loadAgentsFile, parseAgentsFile } from "../../src/config/agents-file.ts";
import type { AgentsFile } from "../../src/config/agents-schema.ts";
import { loadConfig } from "../../src/config/env.ts";
import type { ToolDefinition } from "../../src/core/tools/tool.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { createLogger, type Logger } from "../../src/log.ts";
import { createTestDatabase, type TestDatabase } from "./db.ts";
import { type ModelServer, type Script, startModelServer } from "./model-server.ts";
import { type SlackEmulator, startSlackEmulator } from "./slack-emulator.ts";
import {
  appMentionEvent,
  blockActionsPayload,
  deliverEvent,
  deliverInteraction,
  messageEvent,
} from "./slack-signing.ts";

export const SIGNING_SECRET = "test-signing-secret";
export const CHANNEL = "C0ORDERS";
export const REQUESTER = "U0REQUESTER";
const AGENTS_FILE = fileURLToPath(new URL("../../agents.yml", import.meta.url));

/** agents.yml's support lane, owned by #support: what tests replace to give it other owners. */
export const SUPPORT_LANE = "    support:\n      channel: C0SUPPORT\n";

/**
 * The text of agents.yml with each `[from, to]` replaced, the first `from` each. Throws when a
 * `from` is not in the file, so a test never runs on the file it meant to change.
 */
export function agentsYmlWith(...edits: [from: string, to: string][]): string {
  let text = readFileSync(AGENTS_FILE, "utf8");
  for (const [from, to] of edits) {
    const at = text.indexOf(from);
    if (at < 0) throw new Error(`agents.yml no longer has ${JSON.stringify(from)}`);
    text = text.slice(0, at) + to + text.slice(at + from.length);
  }
  return text;
}

/** agents.yml with `edits` (see agentsYmlWith), parsed with the demo tools. */
export function agentsFileWith(...edits: [from: string, to: string][]): AgentsFile {
  return parseAgentsFile(agentsYmlWith(...edits), "agents.yml", demoTools);
}

/** The one port of fetch's "bad ports" in freePort's range: fetch refuses to connect to it. */
const FETCH_BAD_PORT = 10_080;

/**
 * A port to give a server that is told its port before it listens (Baton's PORT, a Postgres).
 * Below the kernel's ephemeral range (32768 and up on Linux): a port from that range, freed here,
 * may be any outgoing connection's source port by the time the server binds it, and the test files
 * running beside this one open hundreds. Tried on every interface, as Bolt listens.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = 10_000 + Math.floor(Math.random() * 22_000);
    if (port !== FETCH_BAD_PORT && (await bindable(port))) return port;
  }
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, () => server.close(() => resolve(true)));
  });
}

/** Polls `check` every 50 ms until it answers something truthy, and returns that. */
export async function until<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs: number,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface Harness {
  baton: Baton;
  slack: SlackEmulator;
  model: ModelServer;
  db: TestDatabase;
  endpoint: string;
  agentsFile: AgentsFile;
  mention(
    text: string,
    options?: { user?: string; eventId?: string; retryNum?: number; ts?: string },
  ): Promise<{ status: number; ts: string; eventId: string }>;
  reply(threadTs: string, text: string, options?: { user?: string }): Promise<{ status: number }>;
  click(payload: Record<string, unknown>): Promise<{ status: number; body: string }>;
  /**
   * A person clicks a button on a card (an approval or escalation row) in the task's thread;
   * `teamId`: their own team, as the payload's `user.team_id` (default the workspace's; null: none).
   */
  clickCard(
    userId: string,
    actionId: string,
    card: { id: string; card_ts: string | null },
    threadTs: string,
    teamId?: string | null,
  ): Promise<{ status: number; body: string }>;
  /** Polls until the check passes (the worker runs in the background). */
  until<T>(
    what: string,
    check: () => Promise<T | undefined | false>,
    timeoutMs?: number,
  ): Promise<T>;
  /**
   * Starts Baton again on the same database, as after a crash, with a new script or agents file
   * if given; `workers: false` starts it with no task workers (Slack still answered), as when
   * every worker is down.
   */
  restart(options?: { script?: Script; workers?: boolean; agentsFile?: AgentsFile }): Promise<void>;
  close(): Promise<void>;
}

/**
 * For a file whose tests each start their own Baton: registers an `afterEach` that closes what the
 * test started, and returns the `startHarness` that keeps count of it.
 */
export function harnessPerTest(): typeof startHarness {
  const started: Harness[] = [];
  afterEach(async () => {
    for (const harness of started.splice(0)) await harness.close();
  });
  return async (options) => {
    const harness = await startHarness(options);
    started.push(harness);
    return harness;
  };
}

/**
 * Baton as a user meets it: real Bolt over HTTP with signed requests, the real Slack and OpenAI
 * clients pointed at local servers, and a real Postgres database of its own.
 */
export async function startHarness(options: {
  script: Script;
  agentsFile?: AgentsFile;
  maintenance?: boolean;
  /** Tools Baton registers (default: the demo tools). */
  tools?: readonly ToolDefinition[];
  /** Socket Mode (SLACK_APP_TOKEN set): events come over the emulator's WebSocket, not HTTP. */
  socketMode?: boolean;
  /** The URL Baton connects with, given the test database's (a proxy in front of it, say). */
  databaseUrl?: (url: string) => string;
  /** How long a run holds a task without renewing (default Baton's, 120 s). */
  leaseMs?: number;
  /** BATON_JOB_RETRIES (default Baton's, 5). */
  jobRetries?: number;
  /** BATON_HTTP=0: a worker-only replica. */
  workerOnly?: boolean;
  /** OPENAI_API_KEY (default one shaped like OpenAI's, sk-...). */
  apiKey?: string;
  /** SLACK_TIMEOUT_SECONDS (default Baton's, 30). */
  slackTimeoutSeconds?: number;
  /** The bot token's scopes, as Slack reports them (default: all manifest.yml asks for). */
  slackScopes?: readonly string[];
  /** The workspace is part of this Enterprise organization: auth.test names it. */
  slackEnterpriseId?: string;
  /** BATON_AGENTS_FILE, the file a reload reads (the agents file Baton starts with is `agentsFile`). */
  agentsPath?: string;
  /** Baton's logger (default: silent, or TEST_LOG_LEVEL). */
  log?: Logger;
  /** How long a stop waits in all for the work under way (default Baton's, 8 s). */
  stopWaitMs?: number;
}): Promise<Harness> {
  const db = await createTestDatabase();
  const slack = await startSlackEmulator({
    users: [{ id: REQUESTER, name: "dana" }],
    usergroups: [{ id: "S0BILLINGLEADS", handle: "billing-leads", users: ["U0LEE"] }],
    // agents.yml gives the support lane to #support; its members may take its escalations.
    channels: [{ id: "C0SUPPORT", members: ["U0SUPPORTLEAD", "U0OTHER"] }],
    ...(options.slackScopes && { scopes: options.slackScopes }),
    ...(options.slackEnterpriseId && { enterpriseId: options.slackEnterpriseId }),
  });
  let model = await startModelServer(options.script);
  let agentsFile = options.agentsFile ?? (await loadAgentsFile(AGENTS_FILE, demoTools));
  let port = await freePort();
  const log = options.log ?? createLogger({ level: process.env.TEST_LOG_LEVEL ?? "silent" });
  const boot = (workers = true) =>
    startBaton({
      config: loadConfig({
        SLACK_BOT_TOKEN: "xoxb-test",
        SLACK_SIGNING_SECRET: SIGNING_SECRET,
        SLACK_API_URL: slack.url,
        OPENAI_API_KEY: options.apiKey ?? "sk-test-key-not-real",
        OPENAI_BASE_URL: model.baseURL,
        DATABASE_URL: options.databaseUrl?.(db.url) ?? db.url,
        PORT: String(port),
        BATON_WORKERS: "2",
        ...(options.jobRetries !== undefined && { BATON_JOB_RETRIES: String(options.jobRetries) }),
        ...(options.socketMode && { SLACK_APP_TOKEN: slack.config.appToken }),
        ...(options.slackTimeoutSeconds && {
          SLACK_TIMEOUT_SECONDS: String(options.slackTimeoutSeconds),
        }),
        ...(options.workerOnly && { BATON_HTTP: "0" }),
        ...(options.agentsPath && { BATON_AGENTS_FILE: options.agentsPath }),
      }),
      agentsFile,
      log,
      maintenance: options.maintenance ?? false,
      workers,
      ...(options.leaseMs && { leaseMs: options.leaseMs }),
      ...(options.stopWaitMs && { stopWaitMs: options.stopWaitMs }),
      ...(options.tools && { tools: options.tools }),
    });
  // Another test file's process may take the port between freePort's look and Baton's listen (the
  // suites run side by side): a start refused for that alone is tried again on another port.
  async function bootOnFreePort(): Promise<Baton> {
    for (let tries = 1; ; tries++) {
      try {
        return await boot();
      } catch (error) {
        const taken = (error as { cause?: { code?: string } }).cause?.code === "EADDRINUSE";
        if (!taken || tries >= 3) throw error;
        port = await freePort();
      }
    }
  }
  // A start that fails (a port taken after all) closes what this started: its servers would keep
  // the test file's process from ever exiting.
  const closeSupport = async () => {
    await Promise.all([slack.close(), model.close()]);
    await db.drop();
  };
  let baton = await bootOnFreePort().catch(async (error: unknown) => {
    await closeSupport();
    throw error;
  });
  const endpoint = `http://127.0.0.1:${port}/slack/events`;
  let seq = 0;
  const harness: Harness = {
    get baton() {
      return baton;
    },
    slack,
    get model() {
      return model;
    },
    db,
    endpoint,
    agentsFile,
    async mention(text, o = {}) {
      const ts =
        o.ts ??
        slack.addMessage({
          channel: CHANNEL,
          user: o.user ?? REQUESTER,
          text: `<@U0BATONBOT> ${text}`,
        }).ts;
      const eventId = o.eventId ?? `Ev${Date.now()}${seq++}`;
      const event = appMentionEvent({
        user: o.user ?? REQUESTER,
        channel: CHANNEL,
        text: `<@U0BATONBOT> ${text}`,
        ts,
      });
      const res = await deliverEvent(endpoint, SIGNING_SECRET, event, {
        eventId,
        ...(o.retryNum !== undefined && { retryNum: o.retryNum }),
      });
      return { status: res.status, ts, eventId };
    },
    async reply(threadTs, text, o = {}) {
      const ts = slack.addMessage({
        channel: CHANNEL,
        user: o.user ?? REQUESTER,
        text,
        threadTs,
      }).ts;
      const event = messageEvent({
        user: o.user ?? REQUESTER,
        channel: CHANNEL,
        text,
        ts,
        threadTs,
      });
      return deliverEvent(endpoint, SIGNING_SECRET, event, { eventId: `Ev${Date.now()}${seq++}` });
    },
    click: (payload) => deliverInteraction(endpoint, SIGNING_SECRET, payload),
    clickCard: (userId, actionId, card, threadTs, teamId) =>
      clickCardAt(endpoint, { userId, actionId, card, threadTs, teamId }),
    until: (what, check, timeoutMs = 15_000) => until(what, check, timeoutMs),
    async restart(o = {}) {
      await baton.stop();
      if (o.script) {
        await model.close();
        model = await startModelServer(o.script);
      }
      if (o.agentsFile) agentsFile = o.agentsFile;
      baton = await boot(o.workers ?? true);
    },
    async close() {
      await baton.stop();
      await closeSupport();
    },
  };
  return harness;
}

/** A person's click on a card (an approval or escalation row) in a task's thread in #orders. */
export function clickCardAt(
  endpoint: string,
  click: {
    userId: string;
    actionId: string;
    card: { id: string; card_ts: string | null };
    threadTs: string;
    teamId?: string | null | undefined;
  },
): Promise<{ status: number; body: string }> {
  return deliverInteraction(
    endpoint,
    SIGNING_SECRET,
    blockActionsPayload({
      userId: click.userId,
      actionId: click.actionId,
      value: click.card.id,
      channel: CHANNEL,
      messageTs: click.card.card_ts ?? "",
      threadTs: click.threadTs,
      userTeamId: click.teamId,
    }),
  );
}
