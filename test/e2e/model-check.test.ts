import assert from "node:assert/strict";
import { test } from "node:test";
import { startBaton } from "../../src/app.ts";
import { loadConfig } from "../../src/config/env.ts";
import { createLogger } from "../../src/log.ts";
import { createTestDatabase } from "../support/db.ts";
import { freePort } from "../support/harness.ts";
import { startModelServer } from "../support/model-server.ts";
import { startSlackEmulator } from "../support/slack-emulator.ts";

/** Starts Baton with the project's agents.yml (every agent on gpt-4o-mini) and records its log. */
async function startWith(openaiBaseUrl: string, check: (lines: Record<string, unknown>[]) => void) {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    // Debug: the check's own line says it is done, so "no warning" is not read before it.
    level: "debug",
    destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
  });
  const db = await createTestDatabase();
  const slack = await startSlackEmulator();
  const baton = await startBaton({
    config: loadConfig({
      SLACK_BOT_TOKEN: "xoxb-test",
      SLACK_SIGNING_SECRET: "secret",
      SLACK_API_URL: slack.url,
      OPENAI_API_KEY: "sk-test-key-not-real",
      OPENAI_BASE_URL: openaiBaseUrl,
      DATABASE_URL: db.url,
      PORT: String(await freePort()),
    }),
    log,
    maintenance: false,
  });
  try {
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        check(lines);
        return;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  } finally {
    await baton.stop();
    await slack.close();
    await db.drop();
  }
}

test("at start, a model the server does not list is named in the log, with the agents that use it", async () => {
  // An Ollama with llama3.1 only: agents.yml's gpt-4o-mini is not there.
  const model = await startModelServer(() => ({ content: "ok" }), { models: ["llama3.1"] });
  try {
    await startWith(model.baseURL, (lines) => {
      const warning = lines.find((l) => l.level === 40 && l.model === "gpt-4o-mini");
      assert.ok(warning, "a warning names the model");
      assert.deepEqual(warning.agents, ["customer-service", "fulfillment", "inventory", "billing"]);
      assert.match(String(warning.msg), /does not list the model "gpt-4o-mini"/);
    });
  } finally {
    await model.close();
  }
});

test("at start, a model server that cannot be reached is named in the log with the setting to check", async () => {
  const nowhere = `http://127.0.0.1:${await freePort()}/v1`;
  await startWith(nowhere, (lines) => {
    const warning = lines.find((l) => l.level === 40 && /OPENAI_BASE_URL/.test(String(l.msg)));
    assert.ok(warning, JSON.stringify(lines.map((l) => l.msg)));
  });
});

test("at start, models the server lists bring no warning", async () => {
  const model = await startModelServer(() => ({ content: "ok" }), {
    models: ["gpt-4o-mini", "gpt-4.1"],
  });
  try {
    await startWith(model.baseURL, (lines) => {
      assert.ok(lines.some((l) => l.msg === "the model server lists every agent's model"));
      assert.deepEqual(
        lines.filter((l) => Number(l.level) >= 40).map((l) => l.msg),
        [],
      );
    });
  } finally {
    await model.close();
  }
});
