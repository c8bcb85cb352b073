import assert from "node:assert/strict";
import { test } from "node:test";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import { agentsFileWith, harnessPerTest, SUPPORT_LANE } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForApprovalCard, waitForEscalationCard } from "../support/observe.ts";
import { escalationScript, refundCall, taskOfThread } from "../support/scripts-humans.ts";

// Nobody approves their own request, nor one they asked for in the thread: that includes the words
// of a task they handed on to an agent. A billing lead who took an escalation over and
// wrote "@Baton billing: refund order 1077, 149 USD" in the thread asked for that refund.

const startHarness = harnessPerTest();

test("a lead who handed the work to billing from the thread ('refund it') may not approve that refund", async () => {
  const agentsFile = agentsFileWith([SUPPORT_LANE, "    support:\n      users: [U0BILLINGLEAD]\n"]);
  const script = escalationScript();
  script.billing = [refundCall(), { content: "done" }];
  const h = await startHarness({ script: scriptByAgent(script), agentsFile });
  const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(h);
  await h.clickCard("U0BILLINGLEAD", ESCALATION_TAKE_OVER, escalation, ts);
  await h.until("the lead to hold the task", async () =>
    (await taskOfThread(h.db.db, ts))?.owner_id === "U0BILLINGLEAD" ? true : undefined,
  );
  await h.reply(ts, "<@U0BATONBOT> billing: refund order 1077, 149 USD, I checked it", {
    user: "U0BILLINGLEAD",
  });
  const approval = await waitForApprovalCard(h);

  await h.clickCard("U0BILLINGLEAD", APPROVAL_APPROVE, approval, ts);
  // Wait for whatever the click does: a refusal, or the decision.
  await h.until("the click to be judged", async () => {
    const row = await h.db.db
      .selectFrom("approvals")
      .select("status")
      .where("id", "=", approval.id)
      .executeTakeFirstOrThrow();
    const told = h.slack.callsTo("chat.postEphemeral").some((c) => c.args.user === "U0BILLINGLEAD");
    return row.status !== "pending" || told ? true : undefined;
  });
  const row = await h.db.db
    .selectFrom("approvals")
    .select(["status", "decided_by"])
    .where("id", "=", approval.id)
    .executeTakeFirstOrThrow();
  assert.equal(
    row.status,
    "pending",
    `the lead who asked for the refund in the thread approved it themselves (decided_by ${row.decided_by})`,
  );
});
