import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { startBaton } from "../../src/app.ts";
import { loadConfig } from "../../src/config/env.ts";
import { ConfigError } from "../../src/errors.ts";
import { createLogger } from "../../src/log.ts";
import { createTestDatabase, testServerUrl } from "../support/db.ts";
import { freePort } from "../support/harness.ts";
import { startSlackEmulator } from "../support/slack-emulator.ts";

test("a bot token Slack refuses stops the start with what to check, and leaves nothing running", async () => {
  const db = await createTestDatabase();
  const slack = await startSlackEmulator();
  try {
    const start = startBaton({
      config: loadConfig({
        SLACK_BOT_TOKEN: "xoxb-a-wrong-one",
        SLACK_SIGNING_SECRET: "secret",
        SLACK_API_URL: slack.url,
        OPENAI_API_KEY: "sk-test",
        DATABASE_URL: db.url,
        PORT: String(await freePort()),
      }),
      log: createLogger({ level: "silent" }),
    });
    await assert.rejects(start, (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(
        error.message,
        /Slack refused the bot token \(invalid_auth\): check SLACK_BOT_TOKEN/,
      );
      assert.doesNotMatch(
        error.message,
        /xoxb-a-wrong-one/,
        "the token never appears in the message",
      );
      return true;
    });
  } finally {
    await slack.close();
    await db.drop();
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
  await assert.rejects(start, (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.match(error.message, /:6:\d+ agents\[0\]\.tools\[1\]: no tool is named "look_up_order"/);
    return true;
  });
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
