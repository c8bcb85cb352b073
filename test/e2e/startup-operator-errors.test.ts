import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import pg from "pg";
import { startBaton } from "../../src/app.ts";
import { loadConfig } from "../../src/config/env.ts";
import { ConfigError } from "../../src/errors.ts";
import { createLogger } from "../../src/log.ts";
import { createTestDatabase, testServerUrl } from "../support/db.ts";
import { freePort } from "../support/harness.ts";
import { startSlackEmulator } from "../support/slack-emulator.ts";

test("Socket Mode: an app-level token Slack refuses stops the start with what to set, never the token", async () => {
  const db = await createTestDatabase();
  const slack = await startSlackEmulator();
  // What Slack answers apps.connections.open for a revoked or mistyped app-level token.
  slack.failNext("apps.connections.open", { error: "invalid_auth" });
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
      log: createLogger({ level: "silent" }),
      maintenance: false,
    });
    await assert.rejects(start, (error: unknown) => {
      assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
      assert.match(error.message, /Slack refused the app-level token \(invalid_auth\)/);
      assert.match(error.message, /check SLACK_APP_TOKEN/);
      assert.ok(!error.message.includes(slack.config.appToken), "the token never appears");
      return true;
    });
  } finally {
    await slack.close();
    await db.drop();
  }
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
        assert.match(error.message, new RegExp(`ALTER DATABASE "${database}" OWNER TO "${role}"`));
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
