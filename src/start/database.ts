import { randomBytes } from "node:crypto";
import { type Config, passwordsIn } from "../config/env.ts";
import { within } from "../core/duration.ts";
import {
  assertUsable,
  type Db,
  missingGrants,
  openDatabase,
  readinessProbe,
  sessionName,
  unsupportedServer,
} from "../db/database.ts";
import { startEmbeddedPostgres } from "../db/embedded.ts";
import { migrateToLatest } from "../db/migrate.ts";
import { ConfigError, isBatonError } from "../errors.ts";
import { type Logger, registerSecrets } from "../log.ts";
import type { StopSequence } from "./stops.ts";

export interface BatonDatabase {
  url: string;
  db: Db;
  /** Whether the database answers within the time given, asked on a connection of its own. */
  answers(timeoutMs: number): Promise<boolean>;
  /** A refusal for want of grants, told with the setting that names the database. */
  missingGrants(error: unknown): never;
  /** As the server keeps it (cut at 63 bytes): what stamps our rows. */
  writer: string;
}

/** What closing the pool is given even once the stop's deadline is spent: idle connections end at once. */
const CLOSE_GRACE_MS = 1_000;

/** Baton's database, DATABASE_URL's or the embedded one: reachable, and migrated. */
export async function openBatonDatabase(
  config: Config,
  log: Logger,
  stops: StopSequence,
): Promise<BatonDatabase> {
  const url = config.database.url || (await startEmbedded(config, log, stops));
  // Each running task may hold a connection (its turn's statements, a write tool's transaction,
  // an HTTP tool waiting on its endpoint inside it); the rest serve Slack, the sweeps and reports.
  const database = openDatabase(url, {
    max: Math.max(10, config.workers + 6),
    name: `baton-${randomBytes(6).toString("hex")}`,
  });
  // The pool's end waits for every connection in use: one a run still holds past the stop's deadline
  // (a write tool's transaction waiting on its endpoint) is left to the process's exit, which closes
  // it, and the server rolls its transaction back.
  stops.add((waitMs) => within(database.close(), Math.max(waitMs, CLOSE_GRACE_MS)));
  const readiness = readinessProbe(url);
  stops.add(readiness.close);
  const setting = config.database.url
    ? "DATABASE_URL"
    : `the embedded database in ${config.database.dataDir}`;
  const server = await assertUsable(database.db, url, setting);
  const unsupported = unsupportedServer(server);
  if (unsupported) log.warn({ postgres: server.version }, unsupported);
  const applied = await migrateToLatest(database.db)
    .catch(missingGrants(url, setting))
    .catch((error: unknown) => {
      // An older server's own words for a feature it lacks would not say that its age is why.
      if (!unsupported || isBatonError(error)) throw error;
      throw new ConfigError(`${(error as Error).message}; ${unsupported}`, { cause: error });
    });
  if (applied.length) log.info({ migrations: applied }, "database migrated");
  const writer = await sessionName(database.db);
  return {
    url,
    db: database.db,
    answers: readiness.answers,
    missingGrants: missingGrants(url, setting),
    writer,
  };
}

/** The embedded server, for a start without DATABASE_URL; its URL is the one to connect to. */
async function startEmbedded(config: Config, log: Logger, stops: StopSequence): Promise<string> {
  const embedded = await startEmbeddedPostgres({
    dataDir: config.database.dataDir,
    port: config.database.embeddedPort,
    log: (m) => log.debug({ component: "postgres" }, m),
  });
  stops.add(embedded.stop);
  registerSecrets(passwordsIn(embedded.url));
  return embedded.url;
}
