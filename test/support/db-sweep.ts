import { createHash, randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";

/**
 * What the tests' databases on a Postgres server are called, and the sweep of those that runs left
 * behind. The server may be a developer's, shared by checkouts at other commits running their tests
 * at the same time: the sweep drops only what no run can be using.
 *
 * - `<prefix>template_<digest>`: the template for one set of migrations (see db.ts). Each change
 *   to the migrations leaves the one before behind, some 9 MB.
 * - `<prefix>template_<digest>_building`: a template being built; left behind by a builder that died.
 *   (The first checkouts had one `<prefix>template`, with no digest.)
 * - `<prefix><digest>_<random>`: a test's database, copied from that digest's template. Older
 *   checkouts name theirs `<prefix><random>`, with no digest. A run killed mid-test leaves them.
 */
export interface TestDatabaseNames {
  /** "baton_test_"; the sweep's own test uses a prefix of its own. */
  prefix: string;
  /** The migrations of this checkout: its template is never swept. */
  digest: string;
}

export const TEST_DATABASES: TestDatabaseNames = {
  prefix: "baton_test_",
  digest: templateDigest(),
};

/**
 * The template's builders, and the sweep, hold it alone; a test holds it shared while it looks for
 * the template and copies it, so no template goes between the look and the copy. Older checkouts
 * build under it too, but copy without it.
 */
export const TEMPLATE_LOCK = 7261001;

/** A test's database first seen this long ago was left by a killed run: no test file runs so long. */
const LEFTOVER_AFTER_MS = 6 * 3_600_000;

/**
 * Stale templates kept, the most recently built first: a developer going back to the branch before
 * copies its template rather than building it again, and an older checkout's run (which holds no
 * lock while it copies) most likely uses one of them.
 */
const STALE_TEMPLATES_KEPT = 2;

export function templateName(names: TestDatabaseNames = TEST_DATABASES): string {
  return `${names.prefix}template_${names.digest}`;
}

export function testDatabaseName(names: TestDatabaseNames = TEST_DATABASES): string {
  return `${names.prefix}${names.digest}_${randomBytes(6).toString("hex")}`;
}

function templateDigest(): string {
  const folder = fileURLToPath(new URL("../../migrations/", import.meta.url));
  const hash = createHash("sha256");
  for (const name of readdirSync(folder).sort())
    hash.update(name).update(readFileSync(path.join(folder, name)));
  // The job queue's tables are in it too: another pg-boss may make other ones.
  const boss = fileURLToPath(new URL("../../node_modules/pg-boss/package.json", import.meta.url));
  hash.update((JSON.parse(readFileSync(boss, "utf8")) as { version: string }).version);
  return hash.digest("hex").slice(0, 12);
}

interface Found {
  name: string;
  connections: number;
  note: string | null;
}

/** A database of the tests, read from its name. */
interface TestDatabase extends Found {
  kind: "template" | "building" | "test";
  /** Its template's migrations; undefined when the name does not say (an older checkout's). */
  digest: string | undefined;
}

function parse(names: TestDatabaseNames, db: Found): TestDatabase | undefined {
  const rest = db.name.slice(names.prefix.length);
  const template = /^template(?:_([0-9a-f]{12}))?(_building)?$/.exec(rest);
  if (template) return { ...db, kind: template[2] ? "building" : "template", digest: template[1] };
  const test = /^(?:([0-9a-f]{12})_)?[0-9a-f]{12}$/.exec(rest);
  return test ? { ...db, kind: "test", digest: test[1] } : undefined;
}

/**
 * Drops the databases test runs left on the server at `url`, and returns their names:
 * - a test's database first seen more than LEFTOVER_AFTER_MS ago (Postgres keeps no creation
 *   time: the first sweep that sees one writes the time on it, as its comment);
 * - a half-built template (no one builds while the sweep holds the lock);
 * - a template of other migrations, but for the most recently built ones and those a test's
 *   database was copied from, and only while no older checkout's test database is there.
 * Never one with a connection: the drop is not forced, and fails harmlessly if one comes in.
 */
export async function sweepTestDatabases(
  url: string,
  names: TestDatabaseNames = TEST_DATABASES,
): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`select pg_advisory_lock(${TEMPLATE_LOCK})`);
    try {
      return await sweep(client, names);
    } finally {
      await client.query(`select pg_advisory_unlock(${TEMPLATE_LOCK})`);
    }
  } finally {
    await client.end();
  }
}

async function sweep(client: pg.Client, names: TestDatabaseNames): Promise<string[]> {
  // The server's clock: every checkout that shares the server reads the same one.
  const { rows } = await client.query<Found & { now: Date }>(
    `select d.datname as name, shobj_description(d.oid, 'pg_database') as note,
       (select count(*) from pg_stat_activity a where a.datid = d.oid)::int as connections, now()
     from pg_database d where starts_with(d.datname, $1)
     order by d.oid desc`,
    [names.prefix],
  );
  const now = rows[0]?.now.getTime() ?? 0;
  const current = templateName(names);
  const found = rows.flatMap((row) => parse(names, row) ?? []).filter((db) => db.name !== current);
  const dropped: string[] = [];
  const live: TestDatabase[] = [];
  for (const db of found.filter((db) => db.kind === "test")) {
    const seen = seenAt(db.note);
    if (seen === undefined) await markSeen(client, db.name, now);
    const leftover = seen !== undefined && now - seen > LEFTOVER_AFTER_MS;
    if (leftover && (await dropUnused(client, db))) dropped.push(db.name);
    else live.push(db);
  }
  for (const db of found.filter((db) => db.kind === "building"))
    if (await dropUnused(client, db)) dropped.push(db.name);
  // An older checkout's run copies its template without the lock, and its databases do not say
  // which template they came from: while one is there, no template is dropped.
  if (live.some((db) => db.digest === undefined)) return dropped;
  // Newest first: a database's oid is taken when it is made (and kept through the rename).
  const stale = found.filter((db) => db.kind === "template").slice(STALE_TEMPLATES_KEPT);
  for (const db of stale) {
    const copied = live.some((test) => test.digest === db.digest);
    if (!copied && (await dropUnused(client, db))) dropped.push(db.name);
  }
  return dropped;
}

const SEEN = "a test database, first seen at ";

function seenAt(note: string | null): number | undefined {
  if (!note?.startsWith(SEEN)) return undefined;
  const at = Date.parse(note.slice(SEEN.length));
  return Number.isNaN(at) ? undefined : at;
}

async function markSeen(client: pg.Client, name: string, now: number): Promise<void> {
  const note = `${SEEN}${new Date(now).toISOString()}`;
  await client.query(`comment on database ${name} is '${note}'`).catch(harmless);
}

/** Dropped when no one is connected; false when it is in use, gone, or not this role's. */
async function dropUnused(client: pg.Client, db: Found): Promise<boolean> {
  if (db.connections > 0) return false;
  return client.query(`drop database ${db.name}`).then(() => true, harmless);
}

/** In use (55006), dropped meanwhile (3D000), another role's (42501): left as it is. */
function harmless(error: unknown): false {
  const code = (error as { code?: unknown }).code;
  if (code === "55006" || code === "3D000" || code === "42501") return false;
  throw error;
}
