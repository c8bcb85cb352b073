import { createHash, randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { sql } from "kysely";
import pg from "pg";
import { type DatabaseHandle, type Db, openDatabase } from "../../src/db/database.ts";
import { migrateToLatest } from "../../src/db/migrate.ts";
import type { TaskRow } from "../../src/db/schema.ts";
import { insertTask } from "../../src/db/tasks.repository.ts";

/**
 * Real Postgres for tests: the server test/global-setup.ts chose. Each test gets a fresh database
 * copied from a migrated template, so tests never see each other's rows. The template is named for
 * the migrations it ran: another branch or checkout with other migrations, on the same server, gets
 * a template of its own instead of one whose history its migrator calls corrupted.
 */
const TEMPLATE = `baton_test_template_${migrationsDigest()}`;

function migrationsDigest(): string {
  const folder = fileURLToPath(new URL("../../migrations/", import.meta.url));
  const hash = createHash("sha256");
  for (const name of readdirSync(folder).sort())
    hash.update(name).update(readFileSync(path.join(folder, name)));
  return hash.digest("hex").slice(0, 12);
}

export async function testServerUrl(): Promise<string> {
  const url = process.env.BATON_TEST_DATABASE_URL ?? process.env.DATABASE_URL;
  if (!url) {
    throw new Error(
      "no test database: run tests through npm (npm test), or add --test-global-setup=test/global-setup.ts, or set DATABASE_URL",
    );
  }
  return url;
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

/** Dana asks in #orders where order 1042 is; Customer Service owns the new task. Returns its row. */
export async function insertOrderTask(db: Db, thread: string): Promise<TaskRow> {
  const { id } = await db.transaction().execute((tx) =>
    insertTask(tx, {
      channelId: "C0ORDERS",
      threadTs: thread,
      requesterId: "U0DANA",
      title: "where is order 1042?",
      requestText: "where is order 1042?",
      owner: { kind: "agent", id: "customer-service" },
    }),
  );
  return db.selectFrom("tasks").selectAll().where("id", "=", id).executeTakeFirstOrThrow();
}

/** Backends of `db`'s database waiting on a lock: a statement sent is now blocked on a row. */
export async function waitingOnLocks(db: Db): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from pg_stat_activity
    where datname = current_database() and wait_event_type = 'Lock'`.execute(db);
  return rows[0]?.n ?? 0;
}
