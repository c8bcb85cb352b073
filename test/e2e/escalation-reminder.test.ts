import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { afterEach, test } from "node:test";
import { sql } from "kysely";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { enforceDeadlines } from "../../src/runtime/deadlines.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { escalationScript } from "../support/scripts-humans.ts";

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

test("an escalation handed to its fallback pings the fallback person (a live mention)", async () => {
  const text = (await readFile(new URL("../../agents.yml", import.meta.url), "utf8")).replace(
    "    support:\n      channel: C0SUPPORT\n",
    "    support:\n      channel: C0SUPPORT\n      fallback:\n        users: [U0OPSMANAGER]\n",
  );
  h = await startHarness({
    script: scriptByAgent(escalationScript()),
    agentsFile: parseAgentsFile(text, "review.yml", new Set(demoTools.map((t) => t.name))),
  });
  const harness = h;
  const { ts } = await harness.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await harness.until("the escalation card", async () => {
    const row = await harness.db.db.selectFrom("escalations").selectAll().executeTakeFirst();
    return row?.card_ts ? row : undefined;
  });
  await harness.db.db
    .updateTable("escalations")
    .set({ respond_by: sql`now() - interval '1 minute'` })
    .where("id", "=", escalation.id)
    .execute();
  await enforceDeadlines(harness.baton.deps);
  const reminder = await harness.until("the reminder", async () =>
    harness.slack
      .callsTo("chat.postMessage")
      .find((c) => c.args.thread_ts === ts && String(c.args.text).includes("Reminder")),
  );
  const said = String(reminder.args.text);
  assert.ok(said.includes("<@U0OPSMANAGER>"), `the fallback is not pinged: ${said}`);
});
