import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { startBaton } from "../../src/app.ts";
import { loadConfig } from "../../src/config/env.ts";
import { assertUsable, unsupportedServer } from "../../src/db/database.ts";
import { ConfigError } from "../../src/errors.ts";
import { createLogger } from "../../src/log.ts";
import { createTestDatabase, testServerUrl } from "../support/db.ts";
import { freePort } from "../support/harness.ts";
import { type SlackEmulator, startSlackEmulator } from "../support/slack-emulator.ts";

// A start that fails, as the operator meets it: Slack refusing a token, a mistake in the agents
// file, a database Baton cannot use, a taken port, and `npm start` itself in a child process.
// One suite per former test file.

describe("startup", async () => {
  /** The ConfigError a start on a fresh database fails with, Slack at `slackApiUrl`. */
  async function startFailure(slackApiUrl: string, botToken = "xoxb-test"): Promise<ConfigError> {
    const db = await createTestDatabase();
    try {
      const start = startBaton({
        config: loadConfig({
          SLACK_BOT_TOKEN: botToken,
          SLACK_SIGNING_SECRET: "secret",
          SLACK_API_URL: slackApiUrl,
          OPENAI_API_KEY: "sk-test",
          DATABASE_URL: db.url,
          PORT: String(await freePort()),
        }),
        log: createLogger({ level: "silent" }),
      });
      const error = await start.then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
      return error;
    } finally {
      await db.drop();
    }
  }

  test("a bot token Slack refuses stops the start with what to check, and leaves nothing running", async () => {
    const slack = await startSlackEmulator();
    try {
      const error = await startFailure(slack.url, "xoxb-a-wrong-one");
      assert.match(
        error.message,
        /Slack refused the bot token \(invalid_auth\): check SLACK_BOT_TOKEN/,
      );
      assert.doesNotMatch(
        error.message,
        /xoxb-a-wrong-one/,
        "the token never appears in the message",
      );
    } finally {
      await slack.close();
    }
  });

  test("Slack out of reach at the start says so, and that a set HTTPS_PROXY needs NODE_USE_ENV_PROXY", async () => {
    // A port nothing listens on: connections are refused, as behind a proxy Node does not use.
    const closed = await freePort();
    const proxyBefore = process.env.HTTPS_PROXY;
    process.env.HTTPS_PROXY = "http://proxy.internal:3128";
    try {
      const error = await startFailure(`http://127.0.0.1:${closed}/api/`);
      assert.equal(
        error.message,
        "Slack could not be reached: check SLACK_BOT_TOKEN and SLACK_API_URL (HTTPS_PROXY is set, but is used only with NODE_USE_ENV_PROXY=1).",
      );
    } finally {
      if (proxyBefore === undefined) delete process.env.HTTPS_PROXY;
      else process.env.HTTPS_PROXY = proxyBefore;
    }
  });

  test("a mistake in the agents file is reported before any database is reached", async () => {
    const agentsPath = path.join(tmpdir(), `baton-agents-${process.pid}.yml`);
    await writeFile(
      agentsPath,
      'agents:\n  - id: cs\n    name: CS\n    icon: ":speech_balloon:"\n    instructions: Help.\n    tools: [lookup_order, look_up_order]\n',
    );
    // Nothing listens on port 1: a start that tried the database first would fail on the connection.
    const start = startBaton({
      config: loadConfig({
        SLACK_BOT_TOKEN: "xoxb-test",
        SLACK_SIGNING_SECRET: "secret",
        OPENAI_API_KEY: "sk-test",
        DATABASE_URL: "postgres://baton@127.0.0.1:1/baton",
        BATON_AGENTS_FILE: agentsPath,
      }),
      log: createLogger({ level: "silent" }),
    });
    try {
      await assert.rejects(start, (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(
          error.message,
          /:6:\d+ agents\[0\]\.tools\[1\]: no tool is named "look_up_order"/,
        );
        return true;
      });
    } finally {
      await rm(agentsPath, { force: true });
    }
  });

  test("a DATABASE_URL that cannot be used stops the start with one line naming it, never its password", async () => {
    const url = new URL(await testServerUrl());
    url.pathname = "/baton_no_such_database";
    url.password = "not-the-password-hunter2";
    const start = startBaton({
      config: loadConfig({
        SLACK_BOT_TOKEN: "xoxb-test",
        SLACK_SIGNING_SECRET: "secret",
        OPENAI_API_KEY: "sk-test",
        DATABASE_URL: url.toString(),
      }),
      log: createLogger({ level: "silent" }),
    });
    await assert.rejects(start, (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(
        error.message,
        /^Postgres at \S+\/baton_no_such_database cannot be used \(.+\): check DATABASE_URL\.$/,
      );
      assert.doesNotMatch(error.message, /hunter2/);
      return true;
    });
  });
});

test("a server older than PostgreSQL 14 is named at start as one to upgrade", async () => {
  // No server older than 14 runs here: the words are read from what a 13 answers (its
  // server_version's first word), and the start asks the server it is given (assertUsable).
  assert.equal(
    unsupportedServer({ num: 130_023, version: "13.23" }),
    "the database runs PostgreSQL 13.23, older than 14, the oldest Baton supports and is tested on: upgrade the server",
  );
  assert.equal(unsupportedServer({ num: 140_000, version: "14.0" }), undefined);
  const db = await createTestDatabase();
  try {
    const server = await assertUsable(db.db, db.url, "DATABASE_URL");
    assert.match(server.version, /^\d+\.\d+$/, "the version alone, without the build's words");
    assert.ok(server.num >= 140_000, `the test server runs ${server.version}`);
  } finally {
    await db.drop();
  }
});

describe("startup-operator-errors", async () => {
  /** Baton started in Socket Mode, Slack answering apps.connections.open `error` once first. */
  async function startSocketMode(
    error: string,
    run: (start: ReturnType<typeof startBaton>, slack: SlackEmulator) => Promise<void>,
    log = createLogger({ level: "silent" }),
  ) {
    const db = await createTestDatabase();
    const slack = await startSlackEmulator();
    slack.failNext("apps.connections.open", { error });
    try {
      const start = startBaton({
        config: loadConfig({
          SLACK_BOT_TOKEN: "xoxb-test",
          SLACK_SIGNING_SECRET: "secret",
          SLACK_API_URL: slack.url,
          SLACK_APP_TOKEN: slack.config.appToken,
          OPENAI_API_KEY: "sk-test",
          DATABASE_URL: db.url,
          PORT: String(await freePort()),
        }),
        log,
        maintenance: false,
      });
      await run(start, slack);
    } finally {
      await slack.close();
      await db.drop();
    }
  }

  // invalid_auth: a revoked or mistyped token, which the Socket Mode client gives up on itself;
  // missing_scope (no connections:write) and not_allowed_token_type it would retry for ever.
  for (const refusal of ["invalid_auth", "missing_scope", "not_allowed_token_type"])
    test(`Socket Mode: an app-level token Slack refuses (${refusal}) stops the start with what to set, never the token`, async () => {
      const errors: string[] = [];
      const log = createLogger({
        level: "error",
        destination: { write: (line: string) => void errors.push(line) },
      });
      await startSocketMode(
        refusal,
        async (start) => {
          await assert.rejects(start, (error: unknown) => {
            assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
            assert.match(
              error.message,
              new RegExp(`Slack refused the app-level token \\(${refusal}\\)`),
            );
            assert.match(
              error.message,
              /check SLACK_APP_TOKEN \(an app-level token with the connections:write scope/,
            );
            assert.ok(!error.message.includes("xapp-"), "the token never appears");
            return true;
          });
          // The message is the whole story: no error of its own from a server that never started.
          await new Promise((resolve) => setTimeout(resolve, 100));
          assert.deepEqual(errors, []);
        },
        log,
      );
    });

  test("Socket Mode: Slack's own trouble at the start is retried, and Baton starts", async () => {
    await startSocketMode("service_unavailable", async (start, slack) => {
      const baton = await start;
      try {
        await slack.socketMode.connected();
        assert.equal(slack.callsTo("apps.connections.open").filter((c) => c.failed).length, 1);
      } finally {
        await baton.stop();
      }
    });
  });

  async function asAdmin(run: (client: pg.Client) => Promise<unknown>, database?: string) {
    const url = new URL(await testServerUrl());
    if (database) url.pathname = `/${database}`;
    const client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
    try {
      await run(client);
    } finally {
      await client.end();
    }
  }

  // A role given a database it may connect to, but not create in: Baton's migrations need tables in
  // schema public, the job queue a schema of its own.
  for (const granted of ["nothing", "CREATE on schema public"] as const) {
    test(`a DATABASE_URL role with ${granted} granted stops the start with what to grant, never its password`, async () => {
      const suffix = randomBytes(4).toString("hex");
      const role = `baton_test_role_${suffix}`;
      const database = `baton_test_grants_${suffix}`;
      await asAdmin(async (c) => {
        await c.query(`create role ${role} login password 'hunter2-role-password'`);
        await c.query(`create database ${database}`);
      });
      await asAdmin(async (c) => {
        // Postgres 14 and older let every role create in public; 15 and newer do not.
        await c.query("revoke create on schema public from public");
        if (granted !== "nothing") await c.query(`grant create on schema public to ${role}`);
      }, database);
      const url = new URL(await testServerUrl());
      url.username = role;
      url.password = "hunter2-role-password";
      url.pathname = `/${database}`;
      try {
        const start = startBaton({
          config: loadConfig({
            SLACK_BOT_TOKEN: "xoxb-test",
            SLACK_SIGNING_SECRET: "secret",
            OPENAI_API_KEY: "sk-test",
            DATABASE_URL: url.toString(),
            PORT: String(await freePort()),
          }),
          log: createLogger({ level: "silent" }),
          maintenance: false,
        });
        await assert.rejects(start, (error: unknown) => {
          assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
          assert.match(error.message, /permission denied/);
          assert.match(
            error.message,
            new RegExp(`ALTER DATABASE "${database}" OWNER TO "${role}"`),
          );
          assert.match(error.message, /check DATABASE_URL\.$/);
          assert.doesNotMatch(error.message, /hunter2/);
          return true;
        });
      } finally {
        await asAdmin(async (c) => {
          await c.query(`drop database if exists ${database} with (force)`);
          await c.query(`drop role if exists ${role}`);
        });
      }
    });
  }
});

describe("http-port-taken", async () => {
  for (const mode of ["HTTP", "Socket Mode"] as const) {
    test(`${mode}: a PORT another program holds stops the start with the port and the setting`, async () => {
      const holder = createServer();
      await new Promise<void>((resolve) => holder.listen(0, resolve));
      const { port } = holder.address() as { port: number };
      const db = await createTestDatabase();
      const slack = await startSlackEmulator();
      try {
        const start = startBaton({
          config: loadConfig({
            SLACK_BOT_TOKEN: "xoxb-test",
            SLACK_SIGNING_SECRET: "secret",
            SLACK_API_URL: slack.url,
            ...(mode === "Socket Mode" && { SLACK_APP_TOKEN: slack.config.appToken }),
            OPENAI_API_KEY: "sk-test",
            DATABASE_URL: db.url,
            PORT: String(port),
          }),
          log: createLogger({ level: "silent" }),
          maintenance: false,
        });
        await assert.rejects(start, (error: unknown) => {
          assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
          assert.match(error.message, new RegExp(`${port}.*set PORT to a free port`));
          return true;
        });
      } finally {
        holder.close();
        await slack.close();
        await db.drop();
      }
    });
  }

  test("a taken PORT is found before the database, the job queue or any worker starts", async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, resolve));
    const { port } = holder.address() as { port: number };
    try {
      // Nothing listens on port 1: a start that reached the database first would fail on it.
      const start = startBaton({
        config: loadConfig({
          SLACK_BOT_TOKEN: "xoxb-test",
          SLACK_SIGNING_SECRET: "secret",
          OPENAI_API_KEY: "sk-test",
          DATABASE_URL: "postgres://baton@127.0.0.1:1/baton",
          PORT: String(port),
        }),
        log: createLogger({ level: "silent" }),
      });
      await assert.rejects(start, (error: unknown) => {
        assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
        assert.match(error.message, new RegExp(`${port}.*set PORT to a free port`));
        return true;
      });
    } finally {
      holder.close();
    }
  });
});

describe("startup-main", async () => {
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
        // Another tool's name for OPENAI_BASE_URL: the start says so before it goes on.
        OPENAI_API_BASE: "http://localhost:11434/v1",
      });
      assert.equal(code, 1);
      assert.equal(
        stderr,
        `baton: the HTTP server cannot listen on port ${port} (another program uses it): set PORT to a free port\n`,
      );
      assert.doesNotMatch(stdout, /"level":60/);
      const warned = stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as { level: number; variable?: string; msg: string })
        .filter((r) => r.level === 40);
      assert.deepEqual(
        warned.map((r) => [r.variable, r.msg]),
        [
          [
            "OPENAI_API_BASE",
            "OPENAI_API_BASE is set, but Baton reads OPENAI_BASE_URL, which is unset: rename OPENAI_API_BASE to OPENAI_BASE_URL, or unset it.",
          ],
        ],
      );
    } finally {
      holder.close();
    }
  });
});
