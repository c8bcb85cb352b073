import assert from "node:assert/strict";
import { test } from "node:test";
import { APPROVAL_APPROVE, APPROVAL_REJECT } from "../../src/slack/views/approval-card.ts";
import {
  REJECT_REASON_ACTION,
  REJECT_REASON_BLOCK,
  REJECT_REASON_CALLBACK,
} from "../../src/slack/views/reject-modal.ts";
import { CHANNEL, harnessPerTest } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import {
  blockTexts,
  buttonsOf,
  directRefundScript,
  finishedTask,
  refundsOf,
} from "../support/scripts-humans.ts";
import type { SlackCall } from "../support/slack-emulator.ts";
import { blockActionsPayload, viewSubmissionPayload } from "../support/slack-signing.ts";

// A person can decide on a card as soon as Slack shows it, which may be before Baton has Slack's
// answer (the card's ts) and has saved it. Whatever the order, the one card is updated once.

const startHarness = harnessPerTest();

const isApprovalCard = (c: SlackCall) => buttonsOf(c).some((b) => b.action_id === APPROVAL_APPROVE);

/**
 * "@Baton billing: ..." parks the refund on a card; Slack stores the card, but its answer to
 * chat.postMessage is held back, so Baton does not know the card's ts yet.
 */
async function cardShownBeforeItsTsIsSaved() {
  const h = await startHarness({ script: scriptByAgent(directRefundScript()) });
  const held = h.slack.holdAnswer("chat.postMessage", isApprovalCard);
  const { ts } = await h.mention("billing: please refund order 1077, the lamp came back");
  const card = await held.arrived;
  const cardTs = h.slack.messagesIn(CHANNEL, ts).at(-1)?.ts;
  assert.ok(cardTs, "Slack shows the card");
  const approval = await h.db.db.selectFrom("approvals").selectAll().executeTakeFirstOrThrow();
  assert.equal(approval.card_ts, null, "Baton has not saved the card's ts yet");
  return { h, ts, card, cardTs, approval, release: held.release };
}

type Shown = Awaited<ReturnType<typeof cardShownBeforeItsTsIsSaved>>;

function clickCard(s: Shown, actionId: string) {
  return s.h.click(
    blockActionsPayload({
      userId: "U0LEE",
      actionId,
      value: s.approval.id,
      channel: CHANNEL,
      messageTs: s.cardTs,
      threadTs: s.ts,
    }),
  );
}

async function decided(s: Shown, status: string) {
  return s.h.until(`the approval to be ${status}`, async () => {
    const row = await s.h.db.db
      .selectFrom("approvals")
      .selectAll()
      .where("id", "=", s.approval.id)
      .executeTakeFirstOrThrow();
    return row.status === status ? row : undefined;
  });
}

/** Once the task is done: one approval card was ever posted, and one update decided it. */
async function assertOneCardUpdatedOnce(s: Shown, decision: RegExp) {
  await s.h.until("the task to finish and say so", () => finishedTask(s.h.db.db, s.ts));
  const cardPosts = s.h.slack
    .callsTo("chat.postMessage")
    .filter((c) => !c.failed && String(c.args.text).startsWith("Approval needed"));
  assert.deepEqual(cardPosts, [s.card], "the card is posted once, never again");
  const updates = s.h.slack.callsTo("chat.update").filter((c) => !c.failed);
  assert.equal(updates.length, 1, "the card is updated once");
  assert.equal(updates[0]?.args.ts, s.cardTs, "the update is the card's own message");
  assert.match(blockTexts(updates[0] as SlackCall).join("\n"), decision);
  const saved = await s.h.db.db
    .selectFrom("approvals")
    .select("card_ts")
    .where("id", "=", s.approval.id)
    .executeTakeFirstOrThrow();
  assert.equal(saved.card_ts, s.cardTs);
}

test("a reject from the modal before the card's ts is saved updates the one card", async () => {
  const s = await cardShownBeforeItsTsIsSaved();
  await clickCard(s, APPROVAL_REJECT);
  await s.h.slack.waitForCall("views.open");
  const submitted = await s.h.click(
    viewSubmissionPayload({
      userId: "U0LEE",
      callbackId: REJECT_REASON_CALLBACK,
      privateMetadata: s.approval.id,
      values: { [REJECT_REASON_BLOCK]: { [REJECT_REASON_ACTION]: "the lamp was used" } },
    }),
  );
  assert.equal(submitted.status, 200);
  await decided(s, "rejected");
  s.release();

  await assertOneCardUpdatedOnce(s, /Rejected by <@U0LEE>[\s\S]*the lamp was used/);
  assert.equal((await refundsOf(s.h.db.db)).length, 0, "a rejected refund is not made");
});

test("an approve click before the card's ts is saved updates the one card", async () => {
  const s = await cardShownBeforeItsTsIsSaved();
  const clicked = await clickCard(s, APPROVAL_APPROVE);
  assert.equal(clicked.status, 200);
  await decided(s, "approved");
  s.release();

  await assertOneCardUpdatedOnce(s, /Approved by <@U0LEE>/);
  assert.equal((await refundsOf(s.h.db.db)).length, 1, "one refund");
});
