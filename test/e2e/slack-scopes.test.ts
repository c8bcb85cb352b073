import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { parse } from "yaml";
import { BOT_SCOPES } from "../../src/slack/scopes.ts";
import { harnessPerTest } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { warnings } from "../support/observe.ts";

// An app installed before manifest.yml asked for a scope, or a manifest pasted without reinstalling:
// the operator hears of it at start, not from the first call Slack refuses.

describe("slack-scopes", () => {
  const startHarness = harnessPerTest();

  test("Baton's list of scopes is manifest.yml's", () => {
    const manifest = parse(
      readFileSync(new URL("../../manifest.yml", import.meta.url), "utf8"),
    ) as {
      oauth_config: { scopes: { bot: string[] } };
    };
    assert.deepEqual([...BOT_SCOPES].sort(), [...manifest.oauth_config.scopes.bot].sort());
  });

  test("a bot token without a scope manifest.yml asks for is named at start, with what to do", async () => {
    const { lines, log } = warnings();
    await startHarness({
      script: scriptByAgent({}),
      slackScopes: BOT_SCOPES.filter((s) => s !== "channels:read" && s !== "im:write"),
      log,
    });
    const warned = lines.filter((l) => String(l.msg).includes("lacks scopes"));
    assert.equal(warned.length, 1, JSON.stringify(lines));
    assert.deepEqual(warned[0]?.missing, ["channels:read", "im:write"]);
    assert.match(String(warned[0]?.msg), /reinstall the app/);
  });

  test("a token with every scope starts without a word of scopes", async () => {
    const { lines, log } = warnings();
    await startHarness({ script: scriptByAgent({}), log });
    assert.deepEqual(
      lines.filter((l) => /scope/.test(String(l.msg))),
      [],
    );
  });
});
