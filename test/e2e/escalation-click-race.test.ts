import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { enforceDeadlines } from "../../src/runtime/deadlines.ts";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import { agentsYmlWith, type Harness, SUPPORT_LANE, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForEscalationCard } from "../support/observe.ts";
import {
  escalationScript,
  missEscalationDeadline,
  taskOfThread,
} from "../support/scripts-humans.ts";

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** agents.yml with the support lane owned by the billing leads group, falling back to U0OPSMANAGER. */
async function agentsFile() {
  const text = agentsYmlWith([
    SUPPORT_LANE,
    "    support:\n      groups: [S0BILLINGLEADS]\n      fallback:\n        users: [U0OPSMANAGER]\n",
  ]);
  assert.ok(text.includes("S0BILLINGLEADS]\n      fallback"));
  return parseAgentsFile(text, "review.yml", new Set(demoTools.map((t) => t.name)));
}

// The approval flow guards this exact race (decideApproval's `checkedApprovers`); escalations do not.
test("an owner's click still being checked when the sweep hands the escalation to its fallback decides nothing", async () => {
  h = await startHarness({
    script: scriptByAgent(escalationScript()),
    agentsFile: await agentsFile(),
  });
  const harness = h;
  const { ts } = await harness.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(harness);
  assert.deepEqual(escalation.owner, { kind: "group", id: "S0BILLINGLEADS" });

  // U0LEE (a billing lead) clicks; while Baton asks Slack who the billing leads are, the
  // escalation's deadline passes and the sweep hands it to the fallback, U0OPSMANAGER.
  const groupsAsked = harness.slack.holdAnswer("usergroups.users.list");
  const clicked = harness.clickCard("U0LEE", ESCALATION_TAKE_OVER, escalation, ts);
  await groupsAsked.arrived;
  await missEscalationDeadline(harness.db.db, escalation.id);
  await enforceDeadlines(harness.baton.deps);
  const moved = await harness.db.db
    .selectFrom("escalations")
    .selectAll()
    .where("id", "=", escalation.id)
    .executeTakeFirstOrThrow();
  assert.deepEqual(moved.owner, { kind: "user", id: "U0OPSMANAGER" });
  groupsAsked.release();
  await clicked;

  const row = await harness.db.db
    .selectFrom("escalations")
    .selectAll()
    .where("id", "=", escalation.id)
    .executeTakeFirstOrThrow();
  const task = await taskOfThread(harness.db.db, ts);
  assert.equal(row.status, "open", `still the fallback's to decide (decided by ${row.decided_by})`);
  assert.equal(task?.owner_id, "U0OPSMANAGER");
  const told = harness.slack.callsTo("chat.postEphemeral").find((c) => c.args.user === "U0LEE");
  assert.match(String(told?.args.text), /U0OPSMANAGER/, "U0LEE is told who decides now");
});
