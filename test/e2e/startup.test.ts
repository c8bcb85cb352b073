import assert from "node:assert/strict";
import { test } from "node:test";
import { startBaton } from "../../src/app.ts";
import { loadConfig } from "../../src/config/env.ts";
import { ConfigError } from "../../src/errors.ts";
import { createLogger } from "../../src/log.ts";
import { createTestDatabase } from "../support/db.ts";
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
