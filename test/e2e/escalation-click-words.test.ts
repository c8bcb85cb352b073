import assert from "node:assert/strict";
import { test } from "node:test";
import { enforceDeadlines } from "../../src/runtime/deadlines.ts";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import { agentsFileWith, type Harness, harnessPerTest, SUPPORT_LANE } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForEscalationCard } from "../support/observe.ts";
import {
  escalationScript,
  missEscalationDeadline,
  taskOfThread,
} from "../support/scripts-humans.ts";

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

// A support lane with a fallback: once the escalation moved to the fallback, a support member was
// told "only they (or its fallback)", the fallback being "they"; a lane with none said it too.
test("a refused click names the fallback only while it is one", async () => {
  const fallback = `${SUPPORT_LANE}      fallback:\n        users: [U0OPSMANAGER]\n`;
  const h = await startHarness({
    script: scriptByAgent(escalationScript()),
    agentsFile: agentsFileWith([SUPPORT_LANE, fallback]),
  });
  const { ts, escalation } = await escalated(h);
  await h.clickCard("U0SOMEONE", ESCALATION_TAKE_OVER, escalation, ts);
  assert.equal(
    (await toldTo(h, "U0SOMEONE")).text,
    "This escalation is for the members of <#C0SUPPORT>; only they (or <@U0OPSMANAGER>, its fallback) can take it over or send it back.",
  );

  await missEscalationDeadline(h.db.db, escalation.id);
  await enforceDeadlines(h.baton.deps);
  const moved = await h.until("the fallback's card", async () =>
    h.db.db
      .selectFrom("escalations")
      .selectAll()
      .where("card_ts", "!=", escalation.card_ts)
      .executeTakeFirst(),
  );
  await h.clickCard("U0OTHER", ESCALATION_TAKE_OVER, moved, ts);
  assert.equal(
    (await toldTo(h, "U0OTHER")).text,
    "This escalation is for <@U0OPSMANAGER>; only they can take it over or send it back.",
  );
});

test("a refused click on a lane with no fallback names none", async () => {
  const h = await startHarness({ script: scriptByAgent(escalationScript()) });
  const { ts, escalation } = await escalated(h);
  await h.clickCard("U0SOMEONE", ESCALATION_TAKE_OVER, escalation, ts);
  assert.equal(
    (await toldTo(h, "U0SOMEONE")).text,
    "This escalation is for the members of <#C0SUPPORT>; only they can take it over or send it back.",
  );
});
