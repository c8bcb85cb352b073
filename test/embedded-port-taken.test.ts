import assert from "node:assert/strict";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { startEmbeddedPostgres } from "../src/db/embedded.ts";

test("a port another program holds stops the embedded Postgres with the port and the setting to change", async () => {
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
  const { port } = holder.address() as { port: number };
  const dataDir = await mkdtemp(path.join(tmpdir(), "baton-port-"));
  // As root, Postgres runs as "postgres", which must be able to enter the folder (see the test beside).
  await chmod(dataDir, 0o755);
  try {
    await assert.rejects(
      startEmbeddedPostgres({ dataDir, port, portSetting: "BATON_PLAYGROUND_PG_PORT" }),
      (error: Error) => {
        assert.match(error.message, new RegExp(`another program uses 127\\.0\\.0\\.1:${port}`));
        assert.match(error.message, /set BATON_PLAYGROUND_PG_PORT to a free port, or DATABASE_URL/);
        return true;
      },
    );
  } finally {
    holder.close();
    await rm(dataDir, { recursive: true, force: true });
  }
});
