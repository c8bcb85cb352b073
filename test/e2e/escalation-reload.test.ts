import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { describe, test } from "node:test";
import { loadAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { auditStory } from "../../src/runtime/audit-story.ts";
import { enforceDeadlines } from "../../src/runtime/deadlines.ts";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import { agentsYmlWith, harnessPerTest } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForEscalationCard } from "../support/observe.ts";
import {
  ESCALATION_NOTE,
  escalationScript,
  missEscalationDeadline,
  taskOfThread,
} from "../support/scripts-humans.ts";
import { tempAgentsFile } from "../support/temp-agents-file.ts";

// The operator changes a lane's people (SIGHUP) while its escalation card waits: who may take the
// work over is judged by the agents file in use too, as for an approval's card.

const OPERATIONS = "    operations:\n      users: [U0OPSMANAGER]\n";

/** agents.yml with the operations lane naming `users`. */
function withOperations(users: string): string {
  return agentsYmlWith([OPERATIONS, `    operations:\n      users: [${users}]\n`]);
}

/** The flow 3 script, its escalation to the operations lane. */
function toOperations() {
  const script = escalationScript();
  const steps = script["customer-service"] ?? [];
  steps[1] = {
    toolCalls: [
      { name: "escalate_to_human", arguments: { ...ESCALATION_NOTE, lane: "operations" } },
    ],
  };
  return script;
}

describe("escalation-lane-reloaded", async () => {
  const startHarness = harnessPerTest();
  const file = tempAgentsFile("baton-lane-reload-");

  /** Flow 3 escalated to the operations lane under `yml`, the agents file it reloads from. */
  async function escalatedUnder(yml: string) {
    await writeFile(file, yml);
    const h = await startHarness({
      script: scriptByAgent(toOperations()),
      agentsFile: await loadAgentsFile(file, demoTools),
      agentsPath: file,
    });
    const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
    return { h, ts, escalation: await waitForEscalationCard(h) };
  }

  test("a person taken out of the lane by a reload may no longer take its open escalation over; one still named does", async () => {
    const { h, ts, escalation } = await escalatedUnder(withOperations("U0OPSMANAGER, U0LEFT"));
    assert.deepEqual(escalation.owner, { kind: "people", id: "U0OPSMANAGER,U0LEFT" });

    await writeFile(file, withOperations("U0OPSMANAGER"));
    assert.equal(await h.baton.reloadAgents(), true);
    await h.clickCard("U0LEFT", ESCALATION_TAKE_OVER, escalation, ts);
    const told = await h.until("U0LEFT to be told", async () =>
      h.slack.ephemerals.find((e) => e.user === "U0LEFT"),
    );
    assert.match(
      String(told.text),
      /^The agents file no longer names you for this escalation's lane, so nothing was done\. <@U0OPSMANAGER> can take it over/,
    );
    const open = await h.db.db
      .selectFrom("escalations")
      .select("status")
      .where("id", "=", escalation.id)
      .executeTakeFirstOrThrow();
    assert.equal(open.status, "open", "the person taken out of the lane took nothing over");
    const refused = await h.db.db
      .selectFrom("audit_events")
      .select("data")
      .where("kind", "=", "escalation_refused")
      .executeTakeFirstOrThrow();
    assert.equal((refused.data as { reason?: string }).reason, "no_longer_named");
    const task = await taskOfThread(h.db.db, ts);
    const story = (await auditStory(h.baton.deps, task?.id ?? "")).entries.map((e) => e.text);
    assert.ok(
      story.some((l) => /refused: the agents file no longer names them for its lane/.test(l)),
      story.join("\n"),
    );

    await h.clickCard("U0OPSMANAGER", ESCALATION_TAKE_OVER, escalation, ts);
    await h.until("the manager to hold the task", async () => {
      const row = await taskOfThread(h.db.db, ts);
      return row?.owner_id === "U0OPSMANAGER" ? row : undefined;
    });
  });

  test("an escalation past its deadline goes to the fallback the agents file in use names, who may take it", async () => {
    const lane = (fallback: string) =>
      agentsYmlWith([OPERATIONS, `${OPERATIONS}      fallback:\n        users: [${fallback}]\n`]);
    const { h, ts, escalation } = await escalatedUnder(lane("U0OLDFALLBACK"));
    await writeFile(file, lane("U0NEWFALLBACK"));
    assert.equal(await h.baton.reloadAgents(), true);
    await missEscalationDeadline(h.db.db, escalation.id);
    await enforceDeadlines(h.baton.deps);
    const moved = await h.db.db
      .selectFrom("escalations")
      .select(["owner", "card_ts"])
      .where("id", "=", escalation.id)
      .executeTakeFirstOrThrow();
    assert.deepEqual(moved.owner, { kind: "user", id: "U0NEWFALLBACK" });
    const card = await h.until("the fallback's card", async () =>
      h.db.db
        .selectFrom("escalations")
        .select(["id", "card_ts"])
        .where("id", "=", escalation.id)
        .where("card_ts", "!=", escalation.card_ts ?? "")
        .executeTakeFirst(),
    );
    await h.clickCard("U0NEWFALLBACK", ESCALATION_TAKE_OVER, card, ts);
    await h.until("the new fallback to hold the task", async () => {
      const row = await taskOfThread(h.db.db, ts);
      return row?.owner_id === "U0NEWFALLBACK" ? row : undefined;
    });
  });
});
