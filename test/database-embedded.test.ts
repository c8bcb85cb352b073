import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir, userInfo } from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { startEmbeddedPostgres } from "../src/db/embedded.ts";
import { processAlive, stopServerProcess } from "../src/db/server-process.ts";
import { ConfigError } from "../src/errors.ts";
import { freePort } from "./support/harness.ts";

// The embedded Postgres as an operator meets it: a port another program holds, a folder the
// postgres user cannot enter, a stale postmaster.pid, another major's data, a strict umask.
// One suite per former test file. Its starts run one after another, some seconds in all: the name
// sorts it before test/db and test/e2e, so the runner starts it while the long files run.

describe("embedded-port-taken", async () => {
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
          assert.match(
            error.message,
            /set BATON_PLAYGROUND_PG_PORT to a free port, or DATABASE_URL/,
          );
          return true;
        },
      );
    } finally {
      holder.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe("embedded-private-folder", async () => {
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
});

describe("embedded-stale-pid", async () => {
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
});

describe("embedded-left-running", async () => {
  // A Baton killed outright (SIGKILL, out of memory) cannot stop its Postgres, which keeps serving
  // the folder: the next start uses it, and stops it as it would its own.

  /** A Node process that starts the embedded Postgres on `dataDir` and keeps it; resolves once up. */
  async function serverHolder(dataDir: string, port: number) {
    const embedded = new URL("../src/db/embedded.ts", import.meta.url).href;
    const holder = spawn(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `const { startEmbeddedPostgres } = await import(${JSON.stringify(embedded)});
        await startEmbeddedPostgres({ dataDir: ${JSON.stringify(dataDir)}, port: ${port} });
        console.log("up");
        setInterval(() => {}, 60_000);`,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    await new Promise<void>((resolve, reject) => {
      holder.stdout.on("data", (chunk: Buffer) => chunk.toString().includes("up") && resolve());
      holder.once("exit", (code) => reject(new Error(`the holder exited (${code})`)));
    });
    const pid = Number(
      (await readFile(path.join(dataDir, "pg", "postmaster.pid"), "utf8")).split("\n")[0],
    );
    return { holder, pid };
  }

  /**
   * Stops a server the test left running, and removes its folder once its shutdown has ended:
   * removed while the server still writes (its checkpoint, pg_logical), it is not empty to rm.
   */
  async function stopLeft(pid: number, dataDir: string): Promise<void> {
    await stopServerProcess(pid, path.join(dataDir, "pg"), 15_000);
    await rm(dataDir, { recursive: true, force: true });
  }

  test("a server whose Baton was killed is used, then stopped with the process that found it", async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), "baton-left-"));
    await chmod(dataDir, 0o755); // as root, Postgres runs as "postgres" and must enter it
    const port = await freePort();
    const { holder, pid } = await serverHolder(dataDir, port);
    try {
      holder.kill("SIGKILL");
      await new Promise((resolve) => holder.once("exit", resolve));
      assert.ok(processAlive(pid), "the killed Baton's Postgres runs on");

      const found = await startEmbeddedPostgres({ dataDir, port });
      await found.stop();
      // Postgres removes its pid file as its shutdown ends (its process may linger, unreaped).
      const pidFile = path.join(dataDir, "pg", "postmaster.pid");
      await assert.rejects(
        stat(pidFile),
        { code: "ENOENT" },
        "stopped with the process that used it",
      );
      await (await startEmbeddedPostgres({ dataDir, port })).stop();
    } finally {
      await stopLeft(pid, dataDir);
    }
  });

  test("a server another live Baton started stays that one's to stop", async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), "baton-shared-"));
    await chmod(dataDir, 0o755);
    const port = await freePort();
    const { holder, pid } = await serverHolder(dataDir, port);
    try {
      const shared = await startEmbeddedPostgres({ dataDir, port });
      await shared.stop();
      assert.ok(processAlive(pid), "still serving the Baton that started it");
    } finally {
      holder.kill("SIGKILL");
      await stopLeft(pid, dataDir);
    }
  });
});

describe("embedded-start-failures", async () => {
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

  test("a data folder Baton cannot write says where, why and what to set, not a stack", async () => {
    const parent = await mkdtemp(path.join(tmpdir(), "baton-unwritable-"));
    // Root writes any folder: a file where the folder should be fails for every user alike.
    const file = path.join(parent, "data");
    await writeFile(file, "not a folder\n");
    try {
      for (const dataDir of [file, path.join(file, "baton")]) {
        await assert.rejects(startEmbeddedPostgres({ dataDir, port: 54399 }), (error: Error) => {
          assert.ok(error instanceof ConfigError, String(error));
          assert.match(
            error.message,
            /cannot keep its data in .*a file stands where a folder should/,
          );
          assert.match(
            error.message,
            /set BATON_DATA_DIR to one it may write, or set DATABASE_URL/,
          );
          return true;
        });
      }
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
});
