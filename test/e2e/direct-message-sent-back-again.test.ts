import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { type Harness, REQUESTER, SIGNING_SECRET, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { ESCALATION_NOTE, sendBackSubmission } from "../support/scripts-humans.ts";
import { deliverEvent, messageEvent } from "../support/slack-signing.ts";

const DM = "D0DMREQUESTER";
let current: Harness | undefined;
afterEach(async () => {
  await current?.close();
  current = undefined;
});

// Customer Service escalates a DM's task; the manager sends it to Billing from the card. The
// requester read "Billing is on it again." though Billing never had it: now "on it now".
test("the requester is not told an agent is on it 'again' when it never was", async () => {
  const note = { ...ESCALATION_NOTE, lane: "operations" };
  const h = await startHarness({
    script: scriptByAgent({
      "customer-service": [{ toolCalls: [{ name: "escalate_to_human", arguments: note }] }],
      billing: [{ content: "I have refunded 149 USD for order 1077." }],
    }),
  });
  current = h;
  const text = "the lamp from order 1077 caught fire, I want compensation";
  const { ts } = h.slack.addMessage({ channel: DM, user: REQUESTER, text });
  const event = messageEvent({ user: REQUESTER, channel: DM, text, ts });
  await deliverEvent(
    h.endpoint,
    SIGNING_SECRET,
    { ...event, channel_type: "im" },
    { eventId: `EvDM${ts}` },
  );
  const escalation = await h.until("the escalation card", async () => {
    const row = await h.db.db.selectFrom("escalations").selectAll().executeTakeFirst();
    return row?.card_ts ? row : undefined;
  });
  await h.click(
    sendBackSubmission({
      userId: "U0OPSMANAGER",
      escalationId: escalation.id,
      agent: { id: "billing", name: "Billing" },
      instruction: "refund 149 USD for order 1077",
    }),
  );
  const told = await h.until("the requester told", async () =>
    h.slack
      .callsTo("chat.postMessage")
      .find(
        (c) =>
          c.args.channel === DM && c.args.thread_ts === ts && /is on it/.test(String(c.args.text)),
      ),
  );
  assert.doesNotMatch(String(told.args.text), /again/, "Billing never had this task");
});
