import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { startEmbeddedPostgres } from "../src/db/embedded.ts";

test("as root, a data folder the postgres user cannot enter is refused with the folder and the fix", {
  skip: userInfo().uid !== 0 && "only root runs Postgres as another user",
}, async () => {
  const privateDir = await mkdtemp(path.join(tmpdir(), "baton-private-")); // mode 0700
  try {
    await assert.rejects(
      startEmbeddedPostgres({ dataDir: path.join(privateDir, "data"), port: 54399 }),
      (error: Error) => {
        assert.match(error.message, new RegExp(`cannot enter ${privateDir} \\(mode 700\\)`));
        assert.match(error.message, /chmod o\+x .*DATABASE_URL/);
        return true;
      },
    );
  } finally {
    await rm(privateDir, { recursive: true, force: true });
  }
});
