import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { runMaintenance } from "../../src/runtime/maintenance.ts";
import { deliverOutbox } from "../../src/runtime/outbox.ts";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { CHANNEL, type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForApprovalCard } from "../support/observe.ts";
import {
  blockTexts,
  buttonsOf,
  finishedTask,
  missApprovalDeadline,
  orderReturnScript,
} from "../support/scripts-humans.ts";
import type { SlackCall } from "../support/slack-emulator.ts";

// The fallback's fresh approval card can be clicked as soon as Slack shows it,
// before Baton has saved its ts. The decision's card update reads the card's ts when it goes out,
// after the fresh card's post: were it read at the decision, it would still be the original card's,
// and the decision would overwrite the old (already "escalated") card while the card the fallback
// clicked kept its Approve/Reject buttons.

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const isApprovalCard = (c: SlackCall) => buttonsOf(c).some((b) => b.action_id === APPROVAL_APPROVE);

test("the fallback approves its fresh card before its ts is saved: the update goes to the card it clicked", async () => {
  h = await startHarness({ script: scriptByAgent(orderReturnScript()) });
  const harness = h;
  const { ts } = await harness.mention("I'd like to return order 1077, please refund me");
  const parked = await waitForApprovalCard(harness, "the refund to wait");
  const originalCardTs = parked.card_ts;
  await missApprovalDeadline(harness.db.db, parked.id);

  // The sweep hands the approval to its fallback; Slack stores the fresh card, its answer waits.
  const held = harness.slack.holdAnswer("chat.postMessage", isApprovalCard);
  const sweep = runMaintenance(harness.baton.deps);
  await held.arrived;
  const freshCardTs = harness.slack.messagesIn(CHANNEL, ts).at(-1)?.ts;
  assert.ok(freshCardTs && freshCardTs !== originalCardTs, "Slack shows the fallback's card");

  // The fallback clicks the card they see.
  await harness.clickCard(
    "U0OPSMANAGER",
    APPROVAL_APPROVE,
    { id: parked.id, card_ts: freshCardTs },
    ts,
  );
  await harness.until("the approval to be decided", async () => {
    const row = await harness.db.db
      .selectFrom("approvals")
      .select("status")
      .where("id", "=", parked.id)
      .executeTakeFirstOrThrow();
    return row.status === "approved";
  });
  held.release();
  await sweep;

  await harness.until("the task to finish", () => finishedTask(harness.db.db, ts), 30_000);
  const approvedUpdate = await harness.until("the decision's card update", async () => {
    await deliverOutbox(harness.baton.deps, { olderThanMs: 0 });
    return harness.slack
      .callsTo("chat.update")
      .find((c) => !c.failed && /Approved by/.test(blockTexts(c).join("\n")));
  });
  assert.equal(
    approvedUpdate.args.ts,
    freshCardTs,
    `the decision updates the card the fallback clicked (it updated ${String(approvedUpdate.args.ts)}; original card ${originalCardTs})`,
  );
});
