import assert from "node:assert/strict";
import { chmod, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { startEmbeddedPostgres } from "../src/db/embedded.ts";
import { ConfigError } from "../src/errors.ts";
import { freePort } from "./support/harness.ts";

// What an operator meets when the embedded Postgres cannot start, and a start as root on an image
// whose umask keeps other users out of what root makes.

test("a data folder of another PostgreSQL major says what to do, not a stack", async () => {
  const parent = await mkdtemp(path.join(tmpdir(), "baton-major-"));
  await chmod(parent, 0o755); // as root, Postgres runs as "postgres" and must enter it
  const dataDir = path.join(parent, "data");
  try {
    const port = await freePort();
    await (await startEmbeddedPostgres({ dataDir, port })).stop();
    await writeFile(path.join(dataDir, "pg", "PG_VERSION"), "16\n");
    await assert.rejects(startEmbeddedPostgres({ dataDir, port }), (error: Error) => {
      assert.ok(error instanceof ConfigError, String(error));
      assert.match(
        error.message,
        /holds the data of PostgreSQL 16, and this Baton runs PostgreSQL \d+/,
      );
      assert.match(error.message, /set BATON_DATA_DIR to a new folder/);
      return true;
    });
  } finally {
    await rm(parent, { recursive: true, force: true });
  }
});

test("as root under a umask of 027 the embedded Postgres still starts", {
  skip: userInfo().uid !== 0,
}, async () => {
  const parent = await mkdtemp(path.join(tmpdir(), "baton-umask-"));
  await chmod(parent, 0o755);
  const dataDir = path.join(parent, "data");
  const before = process.umask(0o027);
  try {
    const db = await startEmbeddedPostgres({ dataDir, port: await freePort() });
    await db.stop();
    assert.equal(process.umask(), 0o027, "the process's umask is given back");
    assert.equal((await stat(dataDir)).mode & 0o777, 0o755);
  } finally {
    process.umask(before);
    await rm(parent, { recursive: true, force: true });
  }
});
