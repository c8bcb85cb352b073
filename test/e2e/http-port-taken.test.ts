import assert from "node:assert/strict";
import { createServer } from "node:net";
import { test } from "node:test";
import { startBaton } from "../../src/app.ts";
import { loadConfig } from "../../src/config/env.ts";
import { ConfigError } from "../../src/errors.ts";
import { createLogger } from "../../src/log.ts";
import { createTestDatabase } from "../support/db.ts";
import { startSlackEmulator } from "../support/slack-emulator.ts";

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
