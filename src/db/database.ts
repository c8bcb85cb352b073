import { CompiledQuery, Kysely, PostgresDialect, sql, type Transaction } from "kysely";
import pg from "pg";
import { within } from "../core/duration.ts";
import { ConfigError } from "../errors.ts";
import { preparing } from "./pipelined-client.ts";
import type { Database } from "./schema.ts";

export type Db = Kysely<Database>;
export type Tx = Transaction<Database>;
/** Either the pool or an open transaction: repository functions take this first. */
export type Executor = Db | Tx;

// bigint (count(*), bigserial) as JS numbers: our counts stay far below 2^53.
pg.types.setTypeParser(20, (value) => Number.parseInt(value, 10));

/** Socket errors of a database that is away: refused, reset, timed out, or not found. */
const SOCKET_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);
/** What pg says of a connection it lost or could not make, without a code. */
const LOST_MESSAGES =
  /^(Connection terminated|Client has encountered a connection error|timeout exceeded when trying to connect|Connection ended)/;

/**
 * The error says the database could not be reached, not that a statement was wrong: a socket
 * error, pg's own word that it lost the connection, a connection exception (SQLSTATE class 08),
 * or the server ending the session (57P01-57P03: a restart, a failover, an administrator).
 */
export function isConnectionLost(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code === "string")
    return SOCKET_CODES.has(code) || code.startsWith("08") || /^57P0[123]$/.test(code);
  return typeof message === "string" && LOST_MESSAGES.test(message);
}

/**
 * Fails the start with one line that says what to check when the database at `url` cannot be used
 * (refused, unknown role or database, wrong password, unreachable): before any migration runs.
 * Answers the server's version (see unsupportedServer), read by the same query.
 */
export async function assertUsable(db: Db, url: string, setting: string): Promise<ServerVersion> {
  try {
    const { rows } = await sql<ServerVersion>`
      select current_setting('server_version_num')::int as num,
        split_part(current_setting('server_version'), ' ', 1) as version`.execute(db);
    return rows[0] ?? { num: 0, version: "unknown" };
  } catch (error) {
    const reason = (error as Error).message;
    const message = `Postgres at ${whereIs(url)} cannot be used (${reason}): check ${setting}.`;
    throw new ConfigError(message, { cause: error });
  }
}

/**
 * The oldest PostgreSQL major Baton supports: none of its statements, nor the job queue's, needs a
 * newer one, and CI runs the database tests on it (.ci/postgres-14).
 */
export const OLDEST_SERVER = 14;

export type ServerVersion = { num: number; version: string };

/**
 * What to say of a server older than Baton supports; undefined for one it supports. An older one
 * is not refused (13 passed every database test on 2026-12-07), but nothing keeps it so: a
 * statement, or a migration, may fail on it.
 */
export function unsupportedServer(server: ServerVersion): string | undefined {
  if (server.num >= OLDEST_SERVER * 10_000) return undefined;
  return `the database runs PostgreSQL ${server.version}, older than ${OLDEST_SERVER}, the oldest Baton supports and is tested on: upgrade the server`;
}

/**
 * For /readyz: whether the database answers a query within `timeoutMs`, on a connection of its
 * own, so a pool busy with long tool calls does not read as a database that is away. Never throws.
 */
export function readinessProbe(url: string): {
  answers(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
} {
  const pool = new pg.Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 2_000 });
  // A connection lost while idle must not crash the process; the next probe opens another.
  pool.on("error", () => {});
  return {
    async answers(timeoutMs) {
      const answered = pool.query("select 1").then(
        () => true,
        () => false,
      );
      return (await within(answered, timeoutMs)) ?? false;
    },
    close: () => pool.end(),
  };
}

/**
 * A role that may connect but not create (SQLSTATE 42501): Baton's migrations make its tables, and
 * the job queue its own schema, at every start. The start stops with what to grant, not a stack.
 */
export function missingGrants(url: string, setting: string): (error: unknown) => never {
  return (error) => {
    const { code, cause } = error as { code?: unknown; cause?: { code?: unknown } };
    if (code !== "42501" && cause?.code !== "42501") throw error;
    const reason = ((cause?.code === "42501" ? cause : error) as Error).message;
    const { username, pathname } = new URL(url);
    const role = username ? `"${decodeURIComponent(username)}"` : "CURRENT_USER";
    const database = `"${decodeURIComponent(pathname.slice(1) || username)}"`;
    throw new ConfigError(
      `Postgres at ${whereIs(url)} cannot be used (${reason}): Baton creates its tables and its job queue's schema at start, so make its role the database's owner (ALTER DATABASE ${database} OWNER TO ${role}), or grant it CREATE on the database and on schema public; then start again, or check ${setting}.`,
      { cause: error },
    );
  };
}

/** user@host:port/database, never the password. */
export function whereIs(url: string): string {
  try {
    const u = new URL(url);
    const host = u.searchParams.get("host") ?? u.hostname;
    const user = u.username ? `${decodeURIComponent(u.username)}@` : "";
    return `${user}${host}:${u.port || 5432}${u.pathname}`;
  } catch {
    return "the configured URL";
  }
}

export interface DatabaseHandle {
  db: Db;
  pool: pg.Pool;
  close(): Promise<void>;
}

/** The session's application_name, as the server has it. */
export async function sessionName(db: Db): Promise<string> {
  const { rows } = await sql<{
    name: string;
  }>`select current_setting('application_name') as name`.execute(db);
  return rows[0]?.name ?? "";
}

/**
 * `name` is each session's application_name: a process's own id, which stamps the outbox rows it
 * writes (slack_outbox.written_by). A DATABASE_URL that sets application_name has it after the id
 * (see ownSessionName).
 */
export function openDatabase(
  url: string,
  options: { max?: number; name?: string } = {},
): DatabaseHandle {
  // Pipelined: a statement is written as soon as it is issued, so one issued behind another on the
  // same connection (a transaction's BEGIN and first statement, its last statement and COMMIT) takes
  // one round trip, not two. Statements issued one after another's result behave as before.
  const pool = new pg.Pool({
    ...(options.name ? ownSessionName(url, options.name) : { connectionString: url }),
    max: options.max ?? 10,
    pipeline: true,
    // A database behind a dead network answers nothing: fail, and retry, rather than wait forever.
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
  });
  // An idle client losing its connection must not crash the process; the pool replaces it.
  pool.on("error", () => {});
  const provider = preparing(pool);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: provider }) });
  laneConnections.set(db, provider.connect);
  return { db, pool, close: () => db.destroy() };
}

/**
 * The URL's own application_name would win over `name` (pg reads the URL last), and every replica
 * given the same URL would stamp its rows alike: a row another replica wrote, whose writer died
 * while Slack took it, would be sent again without a look in Slack. So the name is the process's
 * id, then the operator's, which pg_stat_activity still shows (the server cuts the name at 63
 * bytes: the id, first, is never cut).
 */
function ownSessionName(url: string, name: string) {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { connectionString: url, application_name: name };
  }
  const theirs = parsed.searchParams.get("application_name");
  if (theirs === null) return { connectionString: url, application_name: name };
  parsed.searchParams.delete("application_name");
  return { connectionString: parsed.toString(), application_name: `${name} ${theirs}` };
}

/**
 * Statements sent one behind another on one connection, each written as soon as it is issued,
 * without waiting for the answer to the one before: Postgres runs them in the order sent. A run
 * writes its turns through one, so a turn's statement travels while the next turn calls the model.
 * The connection is taken at the first statement and given back whenever nothing is in flight, so a
 * run waiting on a model holds none; order still holds, since a new connection only follows answers.
 * Kysely's own single-connection executor waits for each statement in turn, hence the raw client.
 */
export interface StatementLane {
  send<R>(query: CompiledQuery): Promise<{ rows: R[] }>;
  /** Resolves once every statement sent has been answered; their errors belong to their senders. */
  idle(): Promise<void>;
}

const laneConnections = new WeakMap<Db, () => Promise<pg.PoolClient>>();

export function openLane(db: Db): StatementLane {
  const connect = laneConnections.get(db);
  if (!connect) throw new Error("a statement lane needs a database opened with openDatabase");
  let client: Promise<pg.PoolClient> | undefined;
  let inFlight = 0;
  // A connection that failed under a statement (not an SQL error) is destroyed, not reused.
  let broken: Error | undefined;
  const waiting: (() => void)[] = [];
  const settle = (held: Promise<pg.PoolClient>) => {
    if (--inFlight > 0) return;
    client = undefined;
    const failure = broken;
    broken = undefined;
    held.then((c) => c.release(failure)).catch(() => {});
    for (const resolve of waiting.splice(0)) resolve();
  };
  return {
    send<R>(query: CompiledQuery) {
      inFlight++;
      client ??= connect();
      const held = client;
      const result = held.then(
        (c) => c.query(query.sql, query.parameters as unknown[]) as Promise<pg.QueryResult>,
      );
      result.then(
        () => settle(held),
        (error: unknown) => {
          if ((error as { code?: string }).code === undefined) broken ??= error as Error;
          settle(held);
        },
      );
      return result as Promise<{ rows: R[] }>;
    },
    idle() {
      return inFlight === 0 ? Promise.resolve() : new Promise((resolve) => waiting.push(resolve));
    },
  };
}

/**
 * A statement whose text never changes, with what each `$n` is (`Params`) and what a row holds.
 * It is written once, not built and compiled by kysely at every call (on the hot path that was
 * about a tenth of Baton's CPU), and is prepared once per connection like any other.
 */
export interface Statement<Params extends readonly unknown[], Row> {
  rows(db: Executor, ...params: Params): Promise<Row[]>;
  first(db: Executor, ...params: Params): Promise<Row | undefined>;
}

export function statement<Params extends readonly unknown[], Row>(
  text: string,
): Statement<Params, Row> {
  const rows = async (db: Executor, ...params: Params) =>
    (await db.executeQuery<Row>(CompiledQuery.raw(text, [...params]))).rows;
  return { rows, first: async (db, ...params) => (await rows(db, ...params))[0] };
}

/** What pg-boss needs to run its statements inside one of our transactions. */
export interface SqlExecutor {
  executeSql(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

export function sqlExecutor(executor: Executor): SqlExecutor {
  return {
    async executeSql(text, values = []) {
      const result = await executor.executeQuery(CompiledQuery.raw(text, values as unknown[]));
      return { rows: result.rows as unknown[] };
    },
  };
}
