import assert from "node:assert/strict";
import { test } from "node:test";
import { auditStory } from "../../src/runtime/audit-story.ts";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import {
  agentsFileWith,
  CHANNEL,
  type Harness,
  harnessPerTest,
  REQUESTER,
  SUPPORT_LANE,
} from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForApprovalCard, waitForEscalationCard } from "../support/observe.ts";
import {
  answerDecision,
  auditKinds,
  blockTexts,
  cardWithButton,
  escalationScript,
  finishedTask,
  refundCall,
  refundsOf,
  sendBackSubmission,
  taskOfThread,
} from "../support/scripts-humans.ts";

// Dana asks about a lamp that caught fire; Customer Service escalates; a billing lead hands the work
// to Billing with "refund order 1077, 149 USD". Billing's refund waits on an approval whose card
// said "Requested by Dana" only, as if she had asked for that refund. It names the lead who handed
// the work on too, and the lead, who asked for it, is told so when they click Approve.

const LEAD = "U0BILLINGLEAD";
const INSTRUCTION = "refund order 1077, 149 USD, I checked it";

const startHarness = harnessPerTest();

/** The support lane's escalations go to the billing lead, who may also approve refunds. */
async function escalatedToLead() {
  const script = escalationScript();
  script.billing = [refundCall(), answerDecision];
  const agentsFile = agentsFileWith([SUPPORT_LANE, `    support:\n      users: [${LEAD}]\n`]);
  const h = await startHarness({ script: scriptByAgent(script), agentsFile });
  const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(h);
  return { h, ts, escalation };
}

async function approvalCard(h: Harness, ts: string) {
  const approval = await waitForApprovalCard(h);
  const card = cardWithButton(h.slack, ts, APPROVAL_APPROVE);
  assert.ok(card, "the approval card is in the thread");
  return { approval, text: blockTexts(card).join("\n") };
}

/** The card names both who started the task and who handed its work on to the agent. */
function assertNamesBoth(text: string) {
  assert.match(text, new RegExp(`Requested by <@${REQUESTER}>`));
  assert.match(text, new RegExp(`handed on by <@${LEAD}>`), text);
}

test("sent back from the escalation card: the approval card names the lead who handed it on; they may not approve", async () => {
  const { h, ts, escalation } = await escalatedToLead();
  await h.click(
    sendBackSubmission({
      userId: LEAD,
      escalationId: escalation.id,
      agent: { id: "billing", name: "Billing" },
      instruction: INSTRUCTION,
    }),
  );
  const { approval, text } = await approvalCard(h, ts);
  assertNamesBoth(text);
  const [requested] = await auditKinds(h.db.db, approval.task_id, "approval_requested");
  assert.deepEqual(requested?.data.asked_by, {
    requester: REQUESTER,
    handed_on_by: [LEAD],
    in_thread: [],
  });

  await h.clickCard(LEAD, APPROVAL_APPROVE, approval, ts);
  const told = await h.until("the lead to be told", async () =>
    h.slack.callsTo("chat.postEphemeral").find((c) => c.args.user === LEAD),
  );
  assert.match(String(told.args.text), /^You asked for this \(you handed the work on/);
  const [refused] = await auditKinds(h.db.db, approval.task_id, "approval_refused");
  assert.deepEqual(refused?.data, {
    approval_id: approval.id,
    reason: "own_request",
    asked_as: "handed_on",
    decision: "approved",
  });

  await h.clickCard("U0LEE", APPROVAL_APPROVE, approval, ts);
  await h.until("the task to finish", () => finishedTask(h.db.db, ts), 30_000);
  assert.equal((await refundsOf(h.db.db)).length, 1);
  const decided = h.slack
    .callsTo("chat.update")
    .filter((c) => !c.failed && c.args.channel === CHANNEL && c.args.ts === approval.card_ts)
    .at(-1);
  assert.ok(decided, "the card is updated in place");
  const updated = blockTexts(decided).join("\n");
  assert.match(updated, /Approved by <@U0LEE>/);
  assertNamesBoth(updated);
  // The audit trail names them as the card did.
  const story = (await auditStory(h.baton.deps, approval.task_id)).entries.map((e) => e.text);
  assert.ok(
    story.some((t) => t.includes(`requested by human:${REQUESTER}, handed on by human:${LEAD}`)),
    story.join("\n"),
  );
  assert.ok(
    story.includes(
      `Approval click refused: ${LEAD} asked for it (handed the work on), so may not decide it`,
    ),
    story.join("\n"),
  );
});

test("handed on in the thread after a take-over: the approval card names the lead", async () => {
  const { h, ts, escalation } = await escalatedToLead();
  await h.clickCard(LEAD, ESCALATION_TAKE_OVER, escalation, ts);
  await h.until("the lead to hold the task", async () =>
    (await taskOfThread(h.db.db, ts))?.owner_id === LEAD ? true : undefined,
  );
  await h.reply(ts, `<@U0BATONBOT> billing: ${INSTRUCTION}`, { user: LEAD });
  const { text } = await approvalCard(h, ts);
  assertNamesBoth(text);
});
