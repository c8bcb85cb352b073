import assert from "node:assert/strict";
import { test } from "node:test";
import { ownershipHistory } from "../../src/db/ledger.repository.ts";
import { auditStory, whoProcessed, whoProcessedText } from "../../src/runtime/audit-story.ts";
import { APPROVAL_APPROVE, APPROVAL_REJECT } from "../../src/slack/views/approval-card.ts";
import {
  REJECT_REASON_ACTION,
  REJECT_REASON_BLOCK,
  REJECT_REASON_CALLBACK,
} from "../../src/slack/views/reject-modal.ts";
import { CHANNEL, type Harness, harnessPerTest } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForApprovalCard } from "../support/observe.ts";
import {
  blocksOf,
  blockTexts,
  buttonsOf,
  cardWithButton,
  fieldTexts,
  finishedTask,
  orderReturnScript,
  REFUND_ARGS,
  refundsOf,
  taskOfThread,
  toolCallsOf,
} from "../support/scripts-humans.ts";
import { blockActionsPayload, viewSubmissionPayload } from "../support/slack-signing.ts";
import { runBaton } from "../support/slash-command.ts";

const startHarness = harnessPerTest();

/** A fresh Baton, emulator and database per case. */
async function start(): Promise<Harness> {
  return startHarness({ script: scriptByAgent(orderReturnScript()) });
}

/** Flow 2 up to the gate: the refund is parked on a card in the thread, the task waits. */
async function parkedRefund(harness: Harness) {
  const { status, ts } = await harness.mention("I'd like to return order 1077, please refund me");
  assert.equal(status, 200);
  // The card's ts is remembered once it is in Slack: a decision updates that message.
  const approval = await waitForApprovalCard(harness, "the refund to wait for approval");
  const task = await taskOfThread(harness.db.db, ts);
  assert.ok(task);
  assert.equal(task.status, "waiting_human");
  assert.deepEqual([task.owner_kind, task.owner_id], ["agent", "billing"]);
  assert.equal(approval.status, "pending");
  assert.equal(approval.tool, "issue_refund");
  assert.deepEqual(approval.args, REFUND_ARGS);
  assert.equal(approval.requester_id, "U0REQUESTER");
  const [call, ...more] = await toolCallsOf(harness.db.db, task.id, "issue_refund");
  assert.equal(more.length, 0);
  assert.equal(call?.status, "pending_approval");
  assert.equal((await refundsOf(harness.db.db)).length, 0, "nothing is refunded before a decision");

  const card = cardWithButton(harness.slack, ts, APPROVAL_APPROVE);
  assert.ok(card, "an approval card is posted in the thread");
  assert.equal(card.args.channel, CHANNEL);
  assert.equal(card.args.username, "Billing");
  assert.deepEqual(
    buttonsOf(card).map((b) => [b.action_id, b.value]),
    [
      [APPROVAL_APPROVE, approval.id],
      [APPROVAL_REJECT, approval.id],
    ],
  );
  const cardText = blockTexts(card).join("\n");
  assert.match(cardText, /issue_refund/);
  assert.match(cardText, /149/);
  assert.match(cardText, /S0BILLINGLEADS/, "the card names who may approve");
  assert.equal(approval.card_ts, cardTs(harness, ts));
  return { ts, task, approval };
}

/** The ts Slack gave the card: the thread's message that carries its Approve button. */
function cardTs(harness: Harness, threadTs: string): string | undefined {
  return harness.slack
    .messagesIn(CHANNEL, threadTs)
    .find((m) =>
      (m.blocks as { type: string; elements?: { action_id?: string }[] }[] | undefined)?.some(
        (b) => b.type === "actions" && b.elements?.some((e) => e.action_id === APPROVAL_APPROVE),
      ),
    )?.ts;
}

function cardUpdates(harness: Harness, cardTsValue: string | null) {
  return harness.slack
    .callsTo("chat.update")
    .filter((c) => !c.failed && c.args.channel === CHANNEL && c.args.ts === cardTsValue);
}

test("flow 2 approved: a billing lead approves on the card, one refund, CS confirms", async () => {
  const h = await start();
  const { ts, task, approval } = await parkedRefund(h);

  const res = await h.clickCard("U0LEE", APPROVAL_APPROVE, approval, ts);
  assert.equal(res.status, 200);

  const done = await h.until("the task to finish and say so", () => finishedTask(h.db.db, ts));

  const decided = await h.db.db
    .selectFrom("approvals")
    .selectAll()
    .where("id", "=", approval.id)
    .executeTakeFirstOrThrow();
  assert.equal(decided.status, "approved");
  assert.equal(decided.decided_by, "U0LEE");

  // The card is updated in place: the decision, the decider, and no buttons left.
  const [update, ...moreUpdates] = cardUpdates(h, approval.card_ts);
  assert.ok(update, "the card is updated with chat.update on its ts");
  assert.equal(moreUpdates.length, 0);
  assert.match(blockTexts(update).join("\n"), /Approved by <@U0LEE>/);
  assert.ok(!blocksOf(update).some((b) => b.type === "actions"), "no buttons after a decision");
  // Built again from the stored row (jsonb keeps no key order), it lists the arguments as the
  // first card did: in issue_refund's schema's order.
  const posted = cardWithButton(h.slack, ts, APPROVAL_APPROVE);
  assert.ok(posted);
  assert.deepEqual(fieldTexts(update), fieldTexts(posted));
  assert.deepEqual(
    fieldTexts(update).map((f) => f.split("\n")[0]),
    ["*order_id*", "*amount_usd*", "*reason*"],
  );

  const refunds = await refundsOf(h.db.db);
  assert.equal(refunds.length, 1, "exactly one refund");
  assert.equal(Number(refunds[0]?.amount_usd), 149);
  const [call] = await toolCallsOf(h.db.db, task.id, "issue_refund");
  assert.equal(call?.status, "done");
  assert.equal(call?.allowed_by, `approval:${approval.id} by U0LEE`);
  assert.equal(refunds[0]?.idempotency_key, call?.idempotency_key);

  const history = await ownershipHistory(h.db.db, done.id);
  assert.deepEqual(
    history.map((x) => `${x.kind}:${x.from_id}->${x.to_id}`),
    [
      "start:U0REQUESTER->customer-service",
      "transfer:customer-service->fulfillment",
      "transfer:fulfillment->billing",
      "approval_request:billing->U0BILLINGLEAD,S0BILLINGLEADS",
      "approval_decision:U0LEE->billing",
      "hand_back:billing->fulfillment",
      "hand_back:fulfillment->customer-service",
    ],
  );

  const posts = h.slack
    .callsTo("chat.postMessage")
    .filter((c) => c.args.channel === CHANNEL && c.args.thread_ts === ts);
  const answer = posts.at(-1);
  assert.equal(answer?.args.username, "Customer Service");
  assert.match(String(answer?.args.text), /refunded 149 USD/);
});

test("flow 2 rejected: the reason goes back to billing, no refund, the answer says why", async () => {
  const h = await start();
  const { ts, task, approval } = await parkedRefund(h);
  const reason = "Item arrived damaged by customer, not eligible";

  await h.click(
    blockActionsPayload({
      userId: "U0LEE",
      actionId: APPROVAL_REJECT,
      value: approval.id,
      channel: CHANNEL,
      messageTs: approval.card_ts ?? "",
      threadTs: ts,
    }),
  );
  const opened = await h.slack.waitForCall("views.open");
  const view = opened.args.view as { callback_id: string; private_metadata: string };
  assert.equal(view.callback_id, REJECT_REASON_CALLBACK);
  assert.equal(view.private_metadata, approval.id);
  const stillPending = await h.db.db
    .selectFrom("approvals")
    .select("status")
    .where("id", "=", approval.id)
    .executeTakeFirstOrThrow();
  assert.equal(stillPending.status, "pending", "opening the modal decides nothing");

  const res = await h.click(
    viewSubmissionPayload({
      userId: "U0LEE",
      callbackId: REJECT_REASON_CALLBACK,
      privateMetadata: view.private_metadata,
      values: { [REJECT_REASON_BLOCK]: { [REJECT_REASON_ACTION]: reason } },
    }),
  );
  assert.equal(res.status, 200);

  await h.until("the task to finish and say so", () => finishedTask(h.db.db, ts));

  const decided = await h.db.db
    .selectFrom("approvals")
    .selectAll()
    .where("id", "=", approval.id)
    .executeTakeFirstOrThrow();
  assert.deepEqual(
    [decided.status, decided.decided_by, decided.reason],
    ["rejected", "U0LEE", reason],
  );
  assert.equal((await refundsOf(h.db.db)).length, 0, "no refund");

  const [update] = cardUpdates(h, approval.card_ts);
  assert.ok(update, "the card is updated in place");
  const updated = blockTexts(update).join("\n");
  assert.match(updated, /Rejected by <@U0LEE>/);
  assert.match(updated, /Item arrived damaged by customer, not eligible/);
  assert.ok(!blocksOf(update).some((b) => b.type === "actions"));

  // Billing's next request answers its parked call with the reason, and it never tries again.
  const billingRequests = h.model.requestsFor("billing");
  const afterDecision = billingRequests.at(-1);
  const toolMessages = (afterDecision?.body.messages ?? []).filter((m) => m.role === "tool");
  assert.ok(
    toolMessages.some((m) => String(m.content).includes(reason)),
    "billing is told the reason",
  );
  const calls = await toolCallsOf(h.db.db, task.id, "issue_refund");
  assert.deepEqual(
    calls.map((c) => c.status),
    ["rejected"],
    "issue_refund was asked for once and not retried",
  );

  const answer = h.slack
    .callsTo("chat.postMessage")
    .filter((c) => c.args.channel === CHANNEL && c.args.thread_ts === ts)
    .at(-1);
  assert.equal(answer?.args.username, "Customer Service");
  assert.match(String(answer?.args.text), /could not refund/);
  assert.match(String(answer?.args.text), /arrived damaged by customer/);

  // "Who processed this refund?" names the lead as the one who rejected it, not approved it.
  const who = whoProcessedText(await whoProcessed({ db: h.db.db }, "1077", "issue_refund"));
  assert.match(who, /: rejected; rejected by human:U0LEE/);
  assert.doesNotMatch(who, /approved by/);
});

test("flow 2's audit story names the billing agent, the approver and the decision; /baton who answers", async () => {
  const h = await start();
  const { ts, approval } = await parkedRefund(h);
  await h.clickCard("U0LEE", APPROVAL_APPROVE, approval, ts);
  await h.until("the task to finish", () => finishedTask(h.db.db, ts));

  const story = await auditStory(h.baton.deps, "1077");
  const lines = story.entries.map((e) => `${e.actor} ${e.kind} ${e.text}`);
  assert.ok(
    lines.some(
      (l) => l.startsWith("agent:billing approval_requested") && l.includes("issue_refund"),
    ),
  );
  assert.ok(
    lines.some((l) => l.startsWith("human:U0LEE approval_decided")),
    "the approver is named",
  );
  assert.ok(
    lines.some((l) => l.startsWith("agent:billing tool_call") && l.includes("U0LEE")),
    "the refund says who allowed it",
  );
  assert.ok(
    story.entries.some((e) => e.kind === "model_call"),
    "model calls are in the story",
  );

  // "Who processed this refund?" in one command.
  const processed = await whoProcessed(h.baton.deps, "1077", "issue_refund");
  const answer = processed.map((c) => [c.agentId, c.approver]);
  assert.deepEqual(answer, [["billing", "U0LEE"]]);
  // In Slack's story too: the lead as a mention, the agent by name, no approval id.
  const { blocks } = await runBaton(h, "audit 1077");
  const page = (JSON.parse(blocks) as { type: string; text?: { text: string } }[])
    .flatMap((b) => (b.type === "section" && b.text ? [b.text.text] : []))
    .join("\n");
  assert.match(page, /issue_refund\(.*\) → done; approved by <@U0LEE>/);
  assert.match(
    page,
    /Asked <@U0BILLINGLEAD>, <!subteam\^S0BILLINGLEADS> to approve issue_refund\(.*, expires <!date\^\d+\^/,
  );
  assert.match(page, /Handed over to Billing: /);
  for (const internal of [/agent:/, /human:/, /approval:/, /[0-9a-f]{8}-[0-9a-f]{4}-/])
    assert.doesNotMatch(page, internal, page);
  // In Slack, the lead is a mention, as people read it, not the ledger's `human:` id.
  const { text } = await runBaton(h, "who 1077 issue_refund");
  assert.match(
    text,
    /\*Billing\* called `issue_refund` \(.*\): done, approved by <@U0LEE> <!date\^/,
  );
});

test("a reason typed with a NUL or half an emoji rejects all the same: cleaned as a message's text is", async () => {
  const h = await start();
  const { ts, approval } = await parkedRefund(h);
  await h.clickCard("U0LEE", APPROVAL_REJECT, approval, ts);
  await h.slack.waitForCall("views.open");
  // Postgres refuses a NUL in text, and a lone surrogate in jsonb: stored as typed, the decision
  // failed every time it was tried, and the lead was told to try again.
  const res = await h.click(
    viewSubmissionPayload({
      userId: "U0LEE",
      callbackId: REJECT_REASON_CALLBACK,
      privateMetadata: approval.id,
      values: { [REJECT_REASON_BLOCK]: { [REJECT_REASON_ACTION]: "Not\u0000 eligible \ud83d" } },
    }),
  );
  assert.equal(res.status, 200);
  await h.until("the task to finish", () => finishedTask(h.db.db, ts));
  const decided = await h.db.db
    .selectFrom("approvals")
    .select(["status", "reason"])
    .where("id", "=", approval.id)
    .executeTakeFirstOrThrow();
  assert.deepEqual([decided.status, decided.reason], ["rejected", "Not eligible \ufffd"]);
  assert.equal((await refundsOf(h.db.db)).length, 0, "no refund");
});
