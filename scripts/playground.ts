import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { type Baton, startBaton } from "../src/app.ts";
import { loadAgentsFile } from "../src/config/agents-file.ts";
import type { AgentsFile } from "../src/config/agents-schema.ts";
import { loadConfig } from "../src/config/env.ts";
import { whereIs } from "../src/db/database.ts";
import { type EmbeddedDatabase, startEmbeddedPostgres } from "../src/db/embedded.ts";
import { demoTools } from "../src/domain/demo-tools.ts";
import { ConfigError } from "../src/errors.ts";
import { createLogger } from "../src/log.ts";
import { freePort } from "../test/support/harness.ts";
import { type ModelServer, type Script, startModelServer } from "../test/support/model-server.ts";
import { type SlackEmulator, startSlackEmulator } from "../test/support/slack-emulator.ts";

/**
 * Baton on its embedded defaults, talking to the project's own Slack Web API emulator and a
 * scripted model: what `npm run demo` and `npm run bench` run. Each run gets a fresh database.
 */
export const ROOT = fileURLToPath(new URL("../", import.meta.url));
export const SIGNING_SECRET = "playground-signing-secret";

export interface Playground {
  baton: Baton;
  slack: SlackEmulator;
  model: ModelServer;
  databaseUrl: string;
  endpoint: string;
  close(): Promise<void>;
}

export async function startPlayground(options: {
  script: Script;
  database: string;
  agentsFile?: AgentsFile;
  workers?: number;
}): Promise<Playground> {
  const server = await playgroundServer();
  const databaseUrl = await freshDatabase(server.url, options.database);
  const slack = await startSlackEmulator({
    usergroups: [{ id: "S0BILLINGLEADS", handle: "billing-leads", users: ["U0LEE"] }],
    // agents.yml gives the support lane to #support: @sam, in it, takes flow 3's escalation.
    channels: [{ id: "C0SUPPORT", members: ["U0SAM"] }],
  });
  const model = await startModelServer(options.script);
  const port = await freePort();
  const agentsFile =
    options.agentsFile ?? (await loadAgentsFile(path.join(ROOT, "agents.yml"), demoTools));
  const baton = await startBaton({
    config: loadConfig({
      SLACK_BOT_TOKEN: "xoxb-test",
      SLACK_SIGNING_SECRET: SIGNING_SECRET,
      SLACK_API_URL: slack.url,
      OPENAI_API_KEY: "sk-playground-not-a-real-key",
      OPENAI_BASE_URL: model.baseURL,
      DATABASE_URL: databaseUrl,
      PORT: String(port),
      BATON_WORKERS: String(options.workers ?? 4),
    }),
    agentsFile,
    log: createLogger({ level: process.env.LOG_LEVEL ?? "silent" }),
    maintenance: false,
  });
  return {
    baton,
    slack,
    model,
    databaseUrl,
    endpoint: `http://127.0.0.1:${port}/slack/events`,
    async close() {
      await baton.stop();
      await Promise.all([slack.close(), model.close()]);
      await server.stop();
    },
  };
}

/**
 * A setting to fix, in a playground script (the demo, the benches), told by its message alone, not
 * as a stack, and the script's exit code made 1; anything else is thrown on.
 */
export function tellSetting(script: string, error: unknown): void {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`${script} cannot start: ${error.message}\n`);
  process.exitCode = 1;
}

/** tellSetting, then the script ends: for a step before the script started anything to stop. */
export function exitOnSetting(script: string) {
  return (error: unknown): never => {
    tellSetting(script, error);
    process.exit(1);
  };
}

/** DATABASE_URL's server, or the playground's own embedded one (data under .baton/playground). */
export async function playgroundServer(): Promise<EmbeddedDatabase> {
  if (process.env.DATABASE_URL) return { url: process.env.DATABASE_URL, stop: async () => {} };
  const setting = process.env.BATON_PLAYGROUND_PG_PORT?.trim();
  const port = Number(setting ?? 54392);
  if (!/^\d+$/.test(setting ?? "54392") || port < 1 || port > 65_535)
    throw new ConfigError(
      `BATON_PLAYGROUND_PG_PORT is "${setting}": set it to a TCP port number from 1 to 65535, or unset it to use 54392.`,
    );
  return startEmbeddedPostgres({
    dataDir: path.join(ROOT, ".baton", "playground"),
    port,
    portSetting: "BATON_PLAYGROUND_PG_PORT",
  });
}

/** A server DATABASE_URL names that cannot be used is told as a setting to fix, not as a stack. */
async function onServer(serverUrl: string, statements: string[]): Promise<void> {
  const where = `Postgres at ${whereIs(serverUrl)}`;
  const client = new pg.Client({ connectionString: serverUrl });
  try {
    await client.connect();
  } catch (error) {
    const reason = (error as Error).message;
    throw new ConfigError(`${where} cannot be used (${reason}): check DATABASE_URL.`, {
      cause: error,
    });
  }
  let statement = "";
  try {
    for (statement of statements) await client.query(statement);
  } catch (error) {
    const reason = (error as Error).message;
    throw new ConfigError(
      `${where} refused "${statement}" (${reason}): the demo and the benches make their own database there, so DATABASE_URL's role needs CREATEDB; or unset DATABASE_URL to use the playground's embedded Postgres.`,
      { cause: error },
    );
  } finally {
    await client.end();
  }
}

export function withDatabase(serverUrl: string, name: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function freshDatabase(serverUrl: string, name: string): Promise<string> {
  await onServer(serverUrl, [
    `drop database if exists ${name} with (force)`,
    `create database ${name}`,
  ]);
  return withDatabase(serverUrl, name);
}

export const dropDatabase = (serverUrl: string, name: string) =>
  onServer(serverUrl, [`drop database if exists ${name} with (force)`]);
