import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { ESCALATION_SEND_BACK } from "../../src/slack/views/escalation-card.ts";
import { SEND_BACK_CALLBACK } from "../../src/slack/views/reject-modal.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForEscalationCard } from "../support/observe.ts";
import { escalationScript, sendBackSubmission } from "../support/scripts-humans.ts";

// Send back, like Reject, checked the clicker before opening its form, and the check of a lane
// owned by a channel asks Slack for the channel's members: a slow answer let the 3 s trigger_id
// run out, and the person saw "Something went wrong" instead of the form.

/** Well inside Slack's 3 s, leaving time for the request to Slack and back. */
const OPENS_WITHIN_MS = 2_000;

let h: Harness | undefined;
let releaseMembers = () => {};
afterEach(async () => {
  releaseMembers();
  await h?.close();
  h = undefined;
});

/** An escalation to the support lane (#support: U0SUPPORTLEAD, U0OTHER), and Slack slow to list it. */
async function escalatedWithSlowChannel() {
  const harness = await startHarness({ script: scriptByAgent(escalationScript()) });
  h = harness;
  const { ts } = await harness.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(harness);
  const slow = harness.slack.holdAnswer("conversations.members");
  releaseMembers = slow.release;
  return { h: harness, ts, escalation, slow };
}

test("a Send back whose check waits on Slack still opens the form in time", async () => {
  const { h, ts, escalation, slow } = await escalatedWithSlowChannel();
  const clickedAt = Date.now();
  const clicked = h.clickCard("U0SUPPORTLEAD", ESCALATION_SEND_BACK, escalation, ts);
  await slow.arrived;
  const opened = await h.slack.waitForCall("views.open", () => true, OPENS_WITHIN_MS);
  assert.ok(opened.at - clickedAt < OPENS_WITHIN_MS);
  assert.equal((opened.args.view as { callback_id: string }).callback_id, SEND_BACK_CALLBACK);
  slow.release();
  assert.equal((await clicked).status, 200);
  // The lead sends it back: once the agent holds the task, the check has long answered.
  const submitted = await h.click(
    sendBackSubmission({
      userId: "U0SUPPORTLEAD",
      escalationId: escalation.id,
      agent: { id: "customer-service", name: "Customer Service" },
      instruction: "Send a replacement lamp.",
    }),
  );
  assert.equal(submitted.status, 200);
  await h.until("Customer Service to hold the task again", async () => {
    const task = await h.db.db.selectFrom("tasks").select("owner_id").executeTakeFirstOrThrow();
    return task.owner_id === "customer-service" || undefined;
  });
  assert.equal(h.slack.callsTo("views.update").length, 0, "a lane member's form is left as it is");
});

test("a person outside the lane, checked slowly, sees the Send back form turn into the refusal", async () => {
  const { h, ts, escalation, slow } = await escalatedWithSlowChannel();
  const clicked = h.clickCard("U0RANDOM", ESCALATION_SEND_BACK, escalation, ts);
  await slow.arrived;
  await h.slack.waitForCall("views.open", () => true, OPENS_WITHIN_MS);
  slow.release();
  assert.equal((await clicked).status, 200);
  const updated = await h.slack.waitForCall("views.update");
  const refusal = JSON.stringify(updated.args.view);
  assert.match(refusal, /Send back/);
  assert.doesNotMatch(refusal, /"submit"/, "nothing left to submit");
  await h.until("the ephemeral refusal", async () =>
    h.slack.callsTo("chat.postEphemeral").find((c) => c.args.user === "U0RANDOM"),
  );
});
