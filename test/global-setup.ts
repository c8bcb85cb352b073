import path from "node:path";
import { fileURLToPath } from "node:url";
import { type EmbeddedDatabase, startEmbeddedPostgres } from "../src/db/embedded.ts";

/**
 * One real Postgres for the whole test run. With DATABASE_URL set (CI's second pass, against
 * the machine's server) tests use that; otherwise an embedded server lives as long as the run.
 * Test files, in their own processes, find it through BATON_TEST_DATABASE_URL.
 */
let embedded: EmbeddedDatabase | undefined;

export async function globalSetup(): Promise<void> {
  if (process.env.DATABASE_URL) {
    process.env.BATON_TEST_DATABASE_URL = process.env.DATABASE_URL;
    return;
  }
  const root = fileURLToPath(new URL("../", import.meta.url));
  embedded = await startEmbeddedPostgres({
    dataDir: path.join(root, ".baton", "test-pg"),
    port: Number(process.env.BATON_TEST_PG_PORT ?? 54391),
    portSetting: "BATON_TEST_PG_PORT",
  });
  process.env.BATON_TEST_DATABASE_URL = embedded.url;
}

export async function globalTeardown(): Promise<void> {
  await embedded?.stop();
}
