import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { type EmbeddedDatabase, startEmbeddedPostgres } from "../src/db/embedded.ts";
import { sweepTestDatabases } from "./support/db-sweep.ts";

/**
 * One real Postgres for the whole test run. With DATABASE_URL set (CI's second pass, against
 * the machine's server) tests use that; otherwise an embedded server lives as long as the run.
 * Test files, in their own processes, find it through BATON_TEST_DATABASE_URL.
 */
let embedded: EmbeddedDatabase | undefined;

export async function globalSetup(): Promise<void> {
  // Each test file is a process that compiles Baton and its libraries again: V8's code cache on
  // disk, kept beside the packages, halves that (1.2 s to 0.7 s of CPU a file on this VM).
  process.env.NODE_COMPILE_CACHE ??= fileURLToPath(
    new URL("../node_modules/.cache/baton-tests", import.meta.url),
  );
  if (process.env.DATABASE_URL) {
    process.env.BATON_TEST_DATABASE_URL = process.env.DATABASE_URL;
    await sweep(process.env.DATABASE_URL);
    return;
  }
  const root = fileURLToPath(new URL("../", import.meta.url));
  embedded = await startEmbeddedPostgres({
    dataDir: path.join(root, ".baton", "test-pg"),
    port: Number(process.env.BATON_TEST_PG_PORT ?? 54391),
    portSetting: "BATON_TEST_PG_PORT",
  });
  process.env.BATON_TEST_DATABASE_URL = embedded.url;
  await withoutDiskFlushes(embedded.url);
  await sweep(embedded.url);
}

/**
 * The templates and test databases that runs of other migrations, or killed runs, left on the
 * server. A sweep that fails costs disk, not the run: said, and the tests go on.
 */
async function sweep(url: string): Promise<void> {
  try {
    await sweepTestDatabases(url);
  } catch (error) {
    process.stderr.write(`test databases left behind were not swept: ${String(error)}\n`);
  }
}

/**
 * The test server's data is thrown away, and no test stops the server itself: its commits need not
 * wait for the disk (each file creates its database, and each commit was a flush). On this 2-core VM
 * the tests took 248 s instead of 267 s (2026-12-06).
 */
async function withoutDiskFlushes(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    for (const setting of ["fsync", "synchronous_commit", "full_page_writes"])
      await client.query(`alter system set ${setting} = off`);
    await client.query("select pg_reload_conf()");
  } finally {
    await client.end();
  }
}

export async function globalTeardown(): Promise<void> {
  await embedded?.stop();
}
