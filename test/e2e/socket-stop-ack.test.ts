import assert from "node:assert/strict";
import { test } from "node:test";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { CHANNEL, REQUESTER, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForApprovalCard } from "../support/observe.ts";
import { orderReturnScript } from "../support/scripts-humans.ts";
import { appMentionEvent, blockActionsPayload, eventEnvelope } from "../support/slack-signing.ts";

// A stop in Socket Mode keeps the connection open until the envelopes under way are acknowledged:
// otherwise a click decided during the stop would have its acknowledgement go to a closed socket,
// and Slack would show the person a failure for a decision that stood.
test("Socket Mode: a click decided during a stop is acknowledged to Slack", async () => {
  const billing = await startHarness({
    script: scriptByAgent(orderReturnScript()),
    socketMode: true,
  });
  let stopped = false;
  try {
    await billing.slack.socketMode.connected();
    const text = "<@U0BATONBOT> I'd like to return order 1077, please refund me";
    const ts = billing.slack.addMessage({ channel: CHANNEL, user: REQUESTER, text }).ts;
    const mention = eventEnvelope(appMentionEvent({ user: REQUESTER, channel: CHANNEL, text, ts }));
    assert.ok(await billing.slack.socketMode.send("events_api", mention));
    const approval = await waitForApprovalCard(billing, "the refund to wait on its card");
    const held = billing.slack.holdAnswer("usergroups.users.list");
    const click = blockActionsPayload({
      userId: "U0LEE",
      actionId: APPROVAL_APPROVE,
      value: approval.id,
      channel: CHANNEL,
      messageTs: approval.card_ts ?? "",
      threadTs: ts,
    });
    const acked = billing.slack.socketMode.send("interactive", click, { timeoutMs: 5000 });
    await held.arrived;
    const stopping = billing.baton.stop().then(() => {
      stopped = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    held.release();
    await stopping;
    const decided = await billing.db.db
      .selectFrom("approvals")
      .select("status")
      .where("id", "=", approval.id)
      .executeTakeFirstOrThrow();
    assert.equal(decided.status, "approved", "the decision committed");
    assert.ok(await acked, "Slack got the click's acknowledgement");
  } finally {
    if (!stopped) await billing.baton.stop();
    await billing.close().catch(() => undefined);
  }
});
