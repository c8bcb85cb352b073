import { after, before } from "node:test";
import { sql } from "kysely";
import pg from "pg";
import { type DatabaseHandle, type Db, openDatabase } from "../../src/db/database.ts";
import { appendConversation } from "../../src/db/ledger.repository.ts";
import { migrateToLatest } from "../../src/db/migrate.ts";
import type { TaskRow } from "../../src/db/schema.ts";
import { insertTask } from "../../src/db/tasks.repository.ts";
import { startJobQueue } from "../../src/jobs/queue.ts";
import { createLogger } from "../../src/log.ts";
import { createMetrics } from "../../src/metrics.ts";
import { TEMPLATE_LOCK, templateName, testDatabaseName } from "./db-sweep.ts";

/**
 * Real Postgres for tests: the server test/global-setup.ts chose. Each test gets a fresh database
 * copied from a template holding Baton's migrations and the job queue's schema, so tests never see
 * each other's rows, and none spends its start building them. The template is named for what it
 * holds: another branch or checkout with other migrations, on the same server, gets a template of
 * its own instead of one whose history its migrator calls corrupted. The global set-up sweeps the
 * templates and databases that runs left behind (see db-sweep.ts).
 */
const TEMPLATE = templateName();

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

/**
 * Copies the template into `name`, building it first when it is not there. The look and the copy
 * hold the builders' lock shared, so the sweep cannot drop the template between them.
 */
async function copyTemplate(url: string, name: string): Promise<void> {
  await admin(url, async (client) => {
    const copied = async () => {
      await client.query(`select pg_advisory_lock_shared(${TEMPLATE_LOCK})`);
      try {
        const found = await client.query("select 1 from pg_database where datname = $1", [
          TEMPLATE,
        ]);
        if (found.rowCount === 0) return false;
        await client.query(`create database ${name} template ${TEMPLATE}`);
        return true;
      } finally {
        await client.query(`select pg_advisory_unlock_shared(${TEMPLATE_LOCK})`);
      }
    };
    if (await copied()) return;
    await buildTemplate(url);
    if (!(await copied())) throw new Error(`the test template ${TEMPLATE} was dropped once built`);
  });
}

/**
 * Built under another name and renamed once complete: a template that exists is whole, so no one
 * migrates it again, and a builder that died leaves only a half-built copy the next one replaces.
 */
async function buildTemplate(url: string): Promise<void> {
  await admin(url, async (client) => {
    // One builder at a time across parallel test processes.
    await client.query(`select pg_advisory_lock(${TEMPLATE_LOCK})`);
    try {
      const exists = await client.query("select 1 from pg_database where datname = $1", [TEMPLATE]);
      if (exists.rowCount !== 0) return;
      const building = `${TEMPLATE}_building`;
      await client.query(`drop database if exists ${building} with (force)`);
      await client.query(`create database ${building}`);
      const buildingUrl = withDatabase(url, building);
      const handle = openDatabase(buildingUrl, { max: 2 });
      try {
        await migrateToLatest(handle.db);
      } finally {
        await handle.close();
      }
      const queue = await startJobQueue({
        url: buildingUrl,
        log: createLogger({ level: "silent" }),
        metrics: createMetrics(),
        retries: 3,
      });
      await queue.stop(10_000);
      await client.query(`alter database ${building} rename to ${TEMPLATE}`);
    } finally {
      await client.query(`select pg_advisory_unlock(${TEMPLATE_LOCK})`);
    }
  });
}

export interface TestDatabase extends DatabaseHandle {
  url: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const url = await testServerUrl();
  const name = testDatabaseName();
  await copyTemplate(url, name);
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

/**
 * The database a test file's tests share: created before the first test, dropped after the last.
 * Its fields are there once the file's `before` hooks ran, so read them inside hooks and tests.
 */
export function databaseForFile(): TestDatabase {
  let made: TestDatabase | undefined;
  before(async () => {
    made = await createTestDatabase();
  });
  after(async () => {
    await made?.drop();
  });
  const ready = () => {
    if (!made) throw new Error("the file's database is made in before(): use it in a test");
    return made;
  };
  return {
    get db() {
      return ready().db;
    },
    get pool() {
      return ready().pool;
    },
    get url() {
      return ready().url;
    },
    close: () => ready().close(),
    drop: () => ready().drop(),
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

/** An order task whose conversation holds Dana's first message, as a run that claims it reads it. */
export async function insertAskedOrderTask(db: Db, thread: string): Promise<TaskRow> {
  const task = await insertOrderTask(db, thread);
  await db
    .transaction()
    .execute((tx) =>
      appendConversation(tx, [
        { taskId: task.id, stintNo: 1, stepNo: 0, message: { role: "user", content: "where?" } },
      ]),
    );
  return task;
}

/** Backends of `db`'s database waiting on a lock: a statement sent is now blocked on a row. */
export async function waitingOnLocks(db: Db): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from pg_stat_activity
    where datname = current_database() and wait_event_type = 'Lock'`.execute(db);
  return rows[0]?.n ?? 0;
}
