import assert from "node:assert/strict";
import { test } from "node:test";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import { type Harness, harnessPerTest } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForEscalationCard } from "../support/observe.ts";
import { escalationScript, taskOfThread } from "../support/scripts-humans.ts";

// What a person is told of a click on an escalation card that does nothing: it must be true.

const startHarness = harnessPerTest();

const SUPPORT_LEAD = "U0SUPPORTLEAD";

/** Customer Service escalates in a channel thread to the support lane, whose card is posted. */
async function escalated(h: Harness) {
  const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
  return { ts, escalation: await waitForEscalationCard(h) };
}

function toldTo(h: Harness, user: string) {
  return h.until(`${user} to be told`, async () => h.slack.ephemerals.find((e) => e.user === user));
}

// A double click on "Take it over" told the lead "This escalation was already handled by" themselves.
test("a second click on Take it over by the person who took it says it is theirs already", async () => {
  const h = await startHarness({ script: scriptByAgent(escalationScript()) });
  const { ts, escalation } = await escalated(h);
  await h.clickCard(SUPPORT_LEAD, ESCALATION_TAKE_OVER, escalation, ts);
  await h.until(
    "the lead holds the task",
    async () => (await taskOfThread(h.db.db, ts))?.owner_id === SUPPORT_LEAD || undefined,
  );
  await h.clickCard(SUPPORT_LEAD, ESCALATION_TAKE_OVER, escalation, ts);
  assert.match(String((await toldTo(h, SUPPORT_LEAD)).text), /^You already took this over/);
});
