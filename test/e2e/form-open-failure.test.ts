import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { APPROVAL_REJECT } from "../../src/slack/views/approval-card.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForApprovalCard } from "../support/observe.ts";
import { directRefundScript } from "../support/scripts-humans.ts";

// Reject opens a form for the reason once Slack has the click's answer. A form Slack does not open
// (its trigger ran out) decided nothing, and the person is told so instead of seeing nothing.

let h: Harness;
before(async () => {
  h = await startHarness({ script: scriptByAgent(directRefundScript()) });
});
after(async () => {
  await h.close();
});

test("a Reject whose form does not open tells the approver that nothing was done", async () => {
  const { ts } = await h.mention("billing: please refund order 1077, the lamp came back");
  const approval = await waitForApprovalCard(h);
  h.slack.failNext("views.open", { error: "expired_trigger_id" });
  await h.clickCard("U0LEE", APPROVAL_REJECT, approval, ts);
  const told = await h.until("the approver to be told", async () =>
    h.slack.callsTo("chat.postEphemeral").find((c) => c.args.user === "U0LEE"),
  );
  assert.match(String(told.args.text), /nothing was done/);
  const still = await h.db.db
    .selectFrom("approvals")
    .select("status")
    .where("id", "=", approval.id)
    .executeTakeFirstOrThrow();
  assert.equal(still.status, "pending");
});
