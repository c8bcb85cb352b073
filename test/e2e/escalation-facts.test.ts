import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ESCALATION_SEND_BACK } from "../../src/slack/views/escalation-card.ts";
import { CHANNEL, type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForEscalationCard } from "../support/observe.ts";
import { sendBackSubmission, taskOfThread } from "../support/scripts-humans.ts";
import { blockActionsPayload } from "../support/slack-signing.ts";

// The facts of an escalation's note were never merged into the task's: an agent a person sent the
// work back to started its stint with neither the note nor the facts, so no order id.

const LEAD = "U0SUPPORTLEAD";
const NOTE = {
  requester: "Dana (U0REQUESTER)",
  summary: "Dana's lamp caught fire; she wants compensation.",
  done: ["Found her order by email: 1077, delivered, 149 USD"],
  reason: "Safety incident: outside what I may decide.",
  urgency: "high",
  confidence: 0.4,
  lane: "support",
  recommended_action: "Decide on compensation.",
  facts: { order_id: "1077", amount_usd: 149 },
};
const script = scriptByAgent({
  "customer-service": [
    { toolCalls: [{ name: "escalate_to_human", arguments: NOTE }] },
    { content: "Done." },
  ],
  billing: [{ content: "Done." }],
});

let h: Harness;
before(async () => {
  h = await startHarness({ script });
});
after(async () => {
  await h.close();
});

test("an agent sent an escalation back still has the escalation's facts", async () => {
  const { ts } = await h.mention("my lamp caught fire, I want compensation");
  const escalation = await waitForEscalationCard(h);
  await h.click(
    blockActionsPayload({
      userId: LEAD,
      actionId: ESCALATION_SEND_BACK,
      value: escalation.id,
      channel: CHANNEL,
      messageTs: escalation.card_ts ?? "",
      threadTs: ts,
    }),
  );
  await h.slack.waitForCall("views.open");
  await h.click(
    sendBackSubmission({
      userId: LEAD,
      escalationId: escalation.id,
      agent: { id: "billing", name: "Billing" },
      instruction: "Refund it in full.",
    }),
  );
  await h.until("billing to be asked", async () => h.model.requestsFor("billing")[0]);
  const req = h.model.requestsFor("billing")[0];
  const text = JSON.stringify(req?.body.messages);
  const task = await taskOfThread(h.db.db, ts);
  assert.deepEqual(task?.facts, { order_id: "1077", amount_usd: 149 });
  assert.ok(text.includes("order_id=1077"), `Billing is told to refund with no order id: ${text}`);
});
