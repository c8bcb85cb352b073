import assert from "node:assert/strict";
import { test } from "node:test";
import {
  REJECT_REASON_ACTION,
  REJECT_REASON_BLOCK,
  REJECT_REASON_CALLBACK,
} from "../../src/slack/views/reject-modal.ts";
import { harnessPerTest } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForApprovalCard } from "../support/observe.ts";
import {
  directRefundScript,
  REFUND_ARGS,
  refundsOf,
  taskOfThread,
  toolCallsOf,
} from "../support/scripts-humans.ts";
import { viewSubmissionPayload } from "../support/slack-signing.ts";

const startHarness = harnessPerTest();

// A lead rejects a 149 USD refund with a reason a model reads as "refund less instead"; the model
// asks again for 60 USD, under the policy's threshold. A rejected call is not run by calling it
// again with other arguments: the second call waits for the same people, and nothing is refunded.
test("after a rejection, the same tool called again under the threshold still waits for a person", async () => {
  const smaller = { ...REFUND_ARGS, amount_usd: 60, reason: "Partial refund after rejection" };
  const h = await startHarness({
    script: scriptByAgent(directRefundScript(REFUND_ARGS, smaller)),
  });
  const { ts } = await h.mention("billing: please refund order 1077, the lamp came back");
  const first = await waitForApprovalCard(h, "the approval card to be in Slack");
  await h.click(
    viewSubmissionPayload({
      userId: "U0LEE",
      callbackId: REJECT_REASON_CALLBACK,
      privateMetadata: first.id,
      values: {
        [REJECT_REASON_BLOCK]: { [REJECT_REASON_ACTION]: "Too much: at most 60 USD, it was worn" },
      },
    }),
  );
  const task = await taskOfThread(h.db.db, ts);
  assert.ok(task);
  const second = await h.until("the second call to be settled or parked", async () => {
    const calls = await toolCallsOf(h.db.db, task.id, "issue_refund");
    return calls.length === 2 ? calls[1] : undefined;
  });
  assert.equal(second.status, "pending_approval", "the second call waits for a person");
  assert.equal((await refundsOf(h.db.db)).length, 0, "nothing is refunded without a person");
  const approvals = await h.db.db
    .selectFrom("approvals")
    .selectAll()
    .orderBy("created_at")
    .execute();
  assert.equal(approvals.length, 2);
  assert.equal(approvals[1]?.status, "pending");
  assert.deepEqual(approvals[1]?.approvers, first.approvers, "the same people decide");
});
