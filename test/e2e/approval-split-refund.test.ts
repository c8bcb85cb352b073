import assert from "node:assert/strict";
import { test } from "node:test";
import { auditStory } from "../../src/runtime/audit-story.ts";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { harnessPerTest } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForApprovalCard } from "../support/observe.ts";
import {
  auditKinds,
  blocksOf,
  blockTexts,
  cardWithButton,
  finishedTask,
  lastToolMessage,
  refundCall,
  refundsOf,
  taskOfThread,
  toolCallsOf,
} from "../support/scripts-humans.ts";

const startHarness = harnessPerTest();

// agents.yml: issue_refund waits for a billing lead when amount_usd is over 100. Orders 1077 (149
// USD) and 1042 (89 USD) each take a 60 USD refund; the demo tool refunds an order once, so the
// second 60 goes to the other order, as money would leave twice.
const FIRST = { order_id: "1077", amount_usd: 60, reason: "Partial refund, first part" };
const SECOND = { order_id: "1042", amount_usd: 60, reason: "Partial refund, second part" };

// A model (or a customer's text steering it) splits 120 USD into two refunds under the threshold.
// The first runs; the second waits for a person, whose card says the task's refunds add up to 120.
test("a refund under the threshold waits for a person when the task's earlier refunds pass it", async () => {
  const h = await startHarness({
    script: scriptByAgent({
      billing: [
        refundCall(FIRST),
        refundCall(SECOND),
        (request) => ({ content: `Done: ${lastToolMessage(request).slice(0, 200)}` }),
      ],
    }),
  });
  const { ts } = await h.mention("billing: refund 120 USD, 60 on order 1077 and 60 on 1042");
  const task = await taskOfThread(h.db.db, ts);
  assert.ok(task);
  const [first, second] = await h.until("the second refund to be settled or parked", async () => {
    const calls = await toolCallsOf(h.db.db, task.id, "issue_refund");
    return calls.length === 2 ? calls : undefined;
  });
  assert.equal(first?.status, "done", "60 USD alone is under the threshold: it ran");
  assert.equal(first?.allowed_by, "policy:autonomous");
  assert.equal(second?.status, "pending_approval", "60 more makes 120: it waits for a person");
  assert.equal((await refundsOf(h.db.db, "1077")).length, 1);
  assert.equal((await refundsOf(h.db.db, "1042")).length, 0, "not refunded before a decision");

  const approval = await waitForApprovalCard(h, "the approval card to be in Slack");
  assert.deepEqual(approval.args, SECOND);
  assert.equal(approval.policy_id, "large-refunds");
  const why =
    "amount_usd 60 in this call, 120 with this task's earlier issue_refund calls (over 100)";
  assert.equal(approval.why, why);
  const card = cardWithButton(h.slack, ts, APPROVAL_APPROVE);
  assert.ok(card, "the approval card is in the thread");
  assert.ok(blockTexts(card).includes(`*Why:* ${why}`), blockTexts(card).join("\n"));
  const [requested] = await auditKinds(h.db.db, task.id, "approval_requested");
  assert.equal(requested?.data.why, why, "the audit trail says why it waited");
  const story = (await auditStory(h.baton.deps, task.id)).entries.map((e) => e.text);
  assert.ok(
    story.some((line) => line.includes(`under policy large-refunds (${why})`)),
    story.join("\n"),
  );

  await h.clickCard("U0LEE", APPROVAL_APPROVE, approval, ts);
  await h.until("the task to finish", () => finishedTask(h.db.db, ts));
  const refunds = await refundsOf(h.db.db, "1042");
  assert.equal(refunds.length, 1, "refunded once, once approved");
  const [, approved] = await toolCallsOf(h.db.db, task.id, "issue_refund");
  assert.equal(approved?.allowed_by, `approval:${approval.id} by U0LEE`);
  assert.equal(refunds[0]?.idempotency_key, approved?.idempotency_key);
  // The decided card keeps the reason beside the decision.
  const update = h.slack
    .callsTo("chat.update")
    .find((c) => !c.failed && c.args.ts === approval.card_ts);
  assert.ok(update && !blocksOf(update).some((b) => b.type === "actions"));
  assert.ok(blockTexts(update).includes(`*Why:* ${why}`), blockTexts(update).join("\n"));
});

// A refund the tool refused did nothing: it does not count towards the threshold.
test("an earlier refund that failed without running does not count towards the threshold", async () => {
  const refused = { order_id: "1090", amount_usd: 60, reason: "More than the order's 36 USD" };
  const h = await startHarness({
    script: scriptByAgent({
      billing: [
        refundCall(refused),
        refundCall(FIRST),
        { content: "Refunded 60 USD for order 1077." },
      ],
    }),
  });
  const { ts } = await h.mention("billing: refund 60 USD on order 1090, or else on 1077");
  const done = await h.until("the task to finish", () => finishedTask(h.db.db, ts));
  const calls = await toolCallsOf(h.db.db, done.id, "issue_refund");
  assert.deepEqual(
    calls.map((c) => c.status),
    ["failed", "done"],
  );
  assert.equal((await refundsOf(h.db.db, "1077")).length, 1);
  assert.equal((await h.db.db.selectFrom("approvals").select("id").execute()).length, 0);
});
