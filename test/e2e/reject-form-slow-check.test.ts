import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { APPROVAL_REJECT } from "../../src/slack/views/approval-card.ts";
import {
  REJECT_REASON_ACTION,
  REJECT_REASON_BLOCK,
  REJECT_REASON_CALLBACK,
} from "../../src/slack/views/reject-modal.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForApprovalCard } from "../support/observe.ts";
import { directRefundScript } from "../support/scripts-humans.ts";
import { viewSubmissionPayload } from "../support/slack-signing.ts";

// Slack opens a modal only within 3 s of the click (trigger_id, single use). Reject checked the
// clicker first, and that check may ask Slack for a group's members: a slow answer let the trigger
// run out, and an approver saw "Something went wrong" instead of the form.

/** Well inside Slack's 3 s, leaving time for the request to Slack and back. */
const OPENS_WITHIN_MS = 2_000;

let h: Harness | undefined;
/** Lets Slack answer the held group list: a failed test must not leave Baton waiting on it. */
let releaseGroup = () => {};
afterEach(async () => {
  releaseGroup();
  await h?.close();
  h = undefined;
});

/** A refund parked on the billing leads (S0BILLINGLEADS: U0LEE), and Slack slow to list them. */
async function parkedWithSlowGroup() {
  const harness = await startHarness({ script: scriptByAgent(directRefundScript()) });
  h = harness;
  const { ts } = await harness.mention("billing: please refund order 1077, the lamp came back");
  const approval = await waitForApprovalCard(harness);
  assert.equal(harness.slack.callsTo("usergroups.users.list").length, 0, "no list cached yet");
  const slowGroup = harness.slack.holdAnswer("usergroups.users.list");
  releaseGroup = slowGroup.release;
  return { h: harness, ts, approval, slowGroup };
}

test("a Reject whose check waits on Slack still opens the form in time; the submit decides", async () => {
  const { h, ts, approval, slowGroup } = await parkedWithSlowGroup();
  const clickedAt = Date.now();
  const clicked = h.clickCard("U0LEE", APPROVAL_REJECT, approval, ts);
  await slowGroup.arrived;
  const opened = await h.slack.waitForCall("views.open", () => true, OPENS_WITHIN_MS);
  assert.ok(opened.at - clickedAt < OPENS_WITHIN_MS);
  const view = opened.args.view as { callback_id: string; private_metadata: string };
  assert.equal(view.callback_id, REJECT_REASON_CALLBACK);
  assert.equal(view.private_metadata, approval.id);
  slowGroup.release();
  assert.equal((await clicked).status, 200);

  const submitted = await h.click(
    viewSubmissionPayload({
      userId: "U0LEE",
      callbackId: REJECT_REASON_CALLBACK,
      privateMetadata: approval.id,
      values: { [REJECT_REASON_BLOCK]: { [REJECT_REASON_ACTION]: "the lamp was used" } },
    }),
  );
  assert.equal(submitted.status, 200);
  const decided = await h.until("the rejection", async () => {
    const row = await h.db.db
      .selectFrom("approvals")
      .selectAll()
      .where("id", "=", approval.id)
      .executeTakeFirstOrThrow();
    return row.status === "pending" ? undefined : row;
  });
  assert.deepEqual([decided.status, decided.decided_by], ["rejected", "U0LEE"]);
  assert.equal(h.slack.callsTo("views.update").length, 0, "an approver's form is left as it is");
});

test("a person who may not decide, checked slowly, sees the form turn into the refusal", async () => {
  const { h, ts, approval, slowGroup } = await parkedWithSlowGroup();
  const clicked = h.clickCard("U0RANDOM", APPROVAL_REJECT, approval, ts);
  await slowGroup.arrived;
  const opened = await h.slack.waitForCall("views.open", () => true, OPENS_WITHIN_MS);
  slowGroup.release();
  assert.equal((await clicked).status, 200);

  const updated = await h.slack.waitForCall("views.update");
  const viewId = (opened.args.view as { id?: string }).id;
  assert.ok(updated.args.view_id && (!viewId || updated.args.view_id === viewId));
  const refusal = JSON.stringify(updated.args.view);
  assert.match(refusal, /Only .* may decide on `issue_refund`/);
  assert.doesNotMatch(refusal, /"submit"/, "nothing left to submit");
  const told = await h.until("the ephemeral refusal", async () =>
    h.slack.callsTo("chat.postEphemeral").find((c) => c.args.user === "U0RANDOM"),
  );
  assert.match(String(told.args.text), /^Only .* may decide on `issue_refund`/);

  // A form submitted before it turned is checked again, and decides nothing.
  await h.click(
    viewSubmissionPayload({
      userId: "U0RANDOM",
      callbackId: REJECT_REASON_CALLBACK,
      privateMetadata: approval.id,
      values: { [REJECT_REASON_BLOCK]: { [REJECT_REASON_ACTION]: "no" } },
    }),
  );
  await h.until("the submitter to be told", async () =>
    h.slack
      .callsTo("chat.postMessage")
      .find((c) => c.args.channel === "U0RANDOM" && /^Only /.test(String(c.args.text))),
  );
  const row = await h.db.db
    .selectFrom("approvals")
    .select("status")
    .where("id", "=", approval.id)
    .executeTakeFirstOrThrow();
  assert.equal(row.status, "pending");
});
