import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { enforceDeadlines } from "../../src/runtime/deadlines.ts";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import {
  agentsFileWith,
  CHANNEL,
  type Harness,
  SUPPORT_LANE,
  startHarness,
} from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForEscalationCard } from "../support/observe.ts";
import { escalationScript, missEscalationDeadline } from "../support/scripts-humans.ts";

// The support lane, with a fallback person: an escalation nobody picked up in time goes to them.

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** An escalation to the support channel, past its respond-by, with `fallback` (U0OPSMANAGER). */
async function escalationPastDue(fallback = ["U0OPSMANAGER"]) {
  const harness = await startHarness({
    script: scriptByAgent(escalationScript()),
    agentsFile: agentsFileWith([
      SUPPORT_LANE,
      `${SUPPORT_LANE}      fallback:\n        users: [${fallback.join(", ")}]\n`,
    ]),
  });
  h = harness;
  const { ts } = await harness.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(harness);
  await missEscalationDeadline(harness.db.db, escalation.id);
  return { harness, ts, escalation };
}

test("an escalation handed to its fallback pings the fallback person (a live mention)", async () => {
  const { harness, ts } = await escalationPastDue();
  await enforceDeadlines(harness.baton.deps);
  const reminder = await harness.until("the reminder", async () =>
    harness.slack
      .callsTo("chat.postMessage")
      .find((c) => c.args.thread_ts === ts && String(c.args.text).includes("Reminder")),
  );
  const said = String(reminder.args.text);
  assert.ok(said.includes("<@U0OPSMANAGER>"), `the fallback is not pinged: ${said}`);
});

// It went to the first of them only: the second was neither paged nor allowed to take it over.
test("an escalation handed to a fallback of two people is theirs, either may take it", async () => {
  const { harness, ts, escalation } = await escalationPastDue(["U0OPSMANAGER", "U0OPSDEPUTY"]);
  await enforceDeadlines(harness.baton.deps);
  const reminder = await harness.until("the reminder", async () =>
    harness.slack
      .callsTo("chat.postMessage")
      .find((c) => c.args.thread_ts === ts && String(c.args.text).includes("Reminder")),
  );
  assert.match(String(reminder.args.text), /^<@U0OPSMANAGER> <@U0OPSDEPUTY> ⏰/);
  const card = await harness.until("the fallback's card", async () =>
    harness.db.db
      .selectFrom("escalations")
      .selectAll()
      .where("id", "=", escalation.id)
      .where("card_ts", "!=", escalation.card_ts)
      .executeTakeFirst(),
  );
  const click = await harness.clickCard("U0OPSDEPUTY", ESCALATION_TAKE_OVER, card, ts);
  assert.equal(click.status, 200);
  const task = await harness.until("the deputy to hold the task", async () => {
    const row = await harness.db.db.selectFrom("tasks").selectAll().executeTakeFirstOrThrow();
    return row.owner_id === "U0OPSDEPUTY" && row;
  });
  assert.equal(task.status, "waiting_human");
});

// The sweep hands the escalation to its fallback: the old card is updated ("reassigned") and a new
// open card is posted. The fallback clicks the old card before Slack has taken those two writes.
test("a decision made while the fallback's card is on its way leaves no card with live buttons", async () => {
  const { harness, ts, escalation } = await escalationPastDue();
  const updateHeld = harness.slack.holdAnswer("chat.update");
  const sweep = enforceDeadlines(harness.baton.deps);
  await updateHeld.arrived; // committed; Slack is slow to take the "reassigned" update
  await harness.clickCard("U0OPSMANAGER", ESCALATION_TAKE_OVER, escalation, ts);
  updateHeld.release();
  await sweep;

  const decided = await harness.until("the decision", async () => {
    const row = await harness.db.db.selectFrom("escalations").selectAll().executeTakeFirstOrThrow();
    return row.status === "taken_over" && row;
  });
  // Every card of this escalation, as Slack now shows it.
  await harness.until("the outbox to drain", async () => {
    const left = await harness.db.db
      .selectFrom("slack_outbox")
      .select("id")
      .where("status", "not in", ["sent", "dead"])
      .execute();
    return left.length === 0;
  });
  const live = harness.slack
    .messagesIn(CHANNEL, ts)
    .filter((m) => JSON.stringify(m).includes(ESCALATION_TAKE_OVER));
  assert.equal(decided.decided_by, "U0OPSMANAGER");
  assert.deepEqual(
    live.map((m) => m.ts),
    [],
    "a card of a decided escalation still offers its buttons",
  );
});
