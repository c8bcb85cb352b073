import { execFileSync, spawn } from "node:child_process";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { startEmbeddedPostgres } from "../src/db/embedded.ts";
import { freePort } from "./support/harness.ts";

/**
 * A data folder left by a killed process keeps its postmaster.pid. After a reboot or a container
 * restart, the pid in it often belongs to some other live process: that is not a server of ours.
 */
test("a stale postmaster.pid whose pid another live process now has does not stop the start", async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), "baton-stale-pid-"));
  await chmod(dataDir, 0o755); // as root, Postgres runs as "postgres" and must enter it
  const port = await freePort();
  // A live process Postgres cannot tell from a postmaster: one of its own user (as root, "postgres").
  const asRoot = userInfo().uid === 0;
  const ids = asRoot
    ? {
        uid: Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" })),
        gid: Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" })),
      }
    : {};
  const other = spawn("sleep", ["120"], { stdio: "ignore", ...ids });
  try {
    const first = await startEmbeddedPostgres({ dataDir, port });
    const pidFile = path.join(dataDir, "pg", "postmaster.pid");
    const lines = (await readFile(pidFile, "utf8")).split("\n");
    await first.stop();
    // As a SIGKILL of the whole machine leaves it, but naming the reused pid.
    lines[0] = String(other.pid);
    await writeFile(pidFile, lines.join("\n"));
    if (asRoot) execFileSync("chown", ["postgres:postgres", pidFile]);

    const second = await startEmbeddedPostgres({ dataDir, port });
    await second.stop();
  } finally {
    other.kill();
    await rm(dataDir, { recursive: true, force: true });
  }
});
