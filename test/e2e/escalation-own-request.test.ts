import assert from "node:assert/strict";
import { test } from "node:test";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import { harnessPerTest, REQUESTER } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForEscalationCard } from "../support/observe.ts";
import { escalationScript, taskOfThread } from "../support/scripts-humans.ts";

const startHarness = harnessPerTest();

// The support lane is owned by channel C0SUPPORT; the card is posted in the task's own thread
// (C0ORDERS), where the customer who asked is. The customer must not be able to take the
// escalation of their own compensation claim away from the support team.
test("the requester cannot take over the escalation of their own request", async () => {
  const h = await startHarness({ script: scriptByAgent(escalationScript()) });
  const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(h);
  assert.deepEqual(escalation.owner, { kind: "channel", id: "C0SUPPORT" });

  await h.clickCard(REQUESTER, ESCALATION_TAKE_OVER, escalation, ts);
  // Either the requester is told (refused) or the click is decided: wait for whichever comes.
  await h.until(
    "the click to be handled",
    async () =>
      h.slack.callsTo("chat.postEphemeral").some((c) => c.args.user === REQUESTER) ||
      (await h.db.db.selectFrom("escalations").select("status").executeTakeFirst())?.status !==
        "open",
  );
  const told = h.slack.callsTo("chat.postEphemeral").find((c) => c.args.user === REQUESTER);

  const row = await h.db.db
    .selectFrom("escalations")
    .selectAll()
    .where("id", "=", escalation.id)
    .executeTakeFirstOrThrow();
  const task = await taskOfThread(h.db.db, ts);
  assert.equal(row.status, "open", "the escalation is still the support team's to decide");
  assert.equal(task?.owner_id, "C0SUPPORT", "the customer does not own their own escalation");
  assert.match(String(told?.args.text), /you asked for this/i, "the requester is told why not");
});
