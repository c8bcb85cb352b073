import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { createTestDatabase } from "../support/db.ts";
import { freePort } from "../support/harness.ts";

// `npm start` itself, in a child process: what an operator sees when the start fails.
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const JOB_QUEUE_FAILS = fileURLToPath(new URL("../fixtures/job-queue-fails.ts", import.meta.url));

async function npmStart(env: Record<string, string>, preload: string[] = []) {
  const child = spawn(process.execPath, [...preload, "src/main.ts"], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString("utf8");
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  const [code] = (await once(child, "exit")) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

test("an unexpected error at start is one masked JSON line, exit code 1", async () => {
  const db = await createTestDatabase();
  const url = new URL(db.url);
  // The embedded test server checks its password; the machine's (trust) ignores one it is given.
  url.password ||= "hunter2-db-password";
  const password = decodeURIComponent(url.password);
  const secrets = {
    SLACK_BOT_TOKEN: "xoxb-123-456-secretbot",
    SLACK_SIGNING_SECRET: "signing-secret-value-42",
    OPENAI_API_KEY: "sk-proj-abcdefghijklmnopqrstuv",
  };
  try {
    const { code, stdout, stderr } = await npmStart(
      { ...secrets, DATABASE_URL: url.toString(), PORT: String(await freePort()) },
      ["--import", JOB_QUEUE_FAILS],
    );
    assert.equal(code, 1);
    for (const secret of [password, ...Object.values(secrets)])
      assert.ok(!(stdout + stderr).includes(secret), `${secret} leaked into the output`);
    assert.equal(stderr, "", "nothing unstructured");
    const lines = stdout.trim().split("\n");
    const records = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    const last = records.at(-1) as { level: number; msg: string; err: { message: string } };
    assert.equal(last.level, 60, "logged as fatal");
    assert.match(last.msg, /could not start/);
    assert.match(
      last.err.message,
      /^the job queue could not start on postgres:\/\/\w+:\[redacted\]@/,
    );
  } finally {
    await db.drop();
  }
});

test("a recognised error at start keeps its one clear line, exit code 1", async () => {
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, resolve));
  const { port } = holder.address() as { port: number };
  try {
    const { code, stdout, stderr } = await npmStart({
      SLACK_BOT_TOKEN: "xoxb-test",
      SLACK_SIGNING_SECRET: "secret",
      OPENAI_API_KEY: "sk-test",
      // Nothing listens on port 1: the taken PORT is found before the database is tried.
      DATABASE_URL: "postgres://baton@127.0.0.1:1/baton",
      PORT: String(port),
    });
    assert.equal(code, 1);
    assert.equal(
      stderr,
      `baton: the HTTP server cannot listen on port ${port} (another program uses it): set PORT to a free port\n`,
    );
    assert.doesNotMatch(stdout, /"level":60/);
  } finally {
    holder.close();
  }
});
