import { randomBytes } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { type DatabaseHandle, openDatabase } from "../../src/db/database.ts";
import { startEmbeddedPostgres } from "../../src/db/embedded.ts";
import { migrateToLatest } from "../../src/db/migrate.ts";

/**
 * Real Postgres for tests. With DATABASE_URL set, tests use that server; otherwise one embedded
 * server (data under .baton/test-pg) serves the whole run. Each test gets a fresh database
 * copied from a migrated template, so tests never see each other's rows.
 */
const TEMPLATE = "baton_test_template";
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

let serverUrl: Promise<string> | undefined;

export function testServerUrl(): Promise<string> {
  serverUrl ??= (async () => {
    if (process.env.DATABASE_URL) return process.env.DATABASE_URL;
    const embedded = await startEmbeddedPostgres({
      dataDir: path.join(ROOT, ".baton", "test-pg"),
      port: Number(process.env.BATON_TEST_PG_PORT ?? 54391),
    });
    // The server outlives this process on purpose: the next test file reuses it (see embedded.ts).
    return embedded.url;
  })();
  return serverUrl;
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

async function admin<T>(url: string, run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

async function ensureTemplate(url: string): Promise<void> {
  await admin(url, async (client) => {
    // One creator at a time across parallel test processes.
    await client.query("select pg_advisory_lock(7261001)");
    try {
      const exists = await client.query("select 1 from pg_database where datname = $1", [TEMPLATE]);
      const fresh = exists.rowCount === 0;
      if (fresh) await client.query(`create database ${TEMPLATE}`);
      const handle = openDatabase(withDatabase(url, TEMPLATE), { max: 2 });
      try {
        // Migrations are idempotent: a template from an older run picks up new ones.
        await migrateToLatest(handle.db);
      } finally {
        await handle.close();
      }
    } finally {
      await client.query("select pg_advisory_unlock(7261001)");
    }
  });
}

export interface TestDatabase extends DatabaseHandle {
  url: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const url = await testServerUrl();
  await ensureTemplate(url);
  const name = `baton_test_${randomBytes(6).toString("hex")}`;
  await admin(url, (client) => client.query(`create database ${name} template ${TEMPLATE}`));
  const dbUrl = withDatabase(url, name);
  const handle = openDatabase(dbUrl, { max: 8 });
  return {
    ...handle,
    url: dbUrl,
    async drop() {
      await handle.close();
      await admin(url, (client) => client.query(`drop database if exists ${name} with (force)`));
    },
  };
}
