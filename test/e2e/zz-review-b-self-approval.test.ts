import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { CHANNEL, type Harness, REQUESTER, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import {
  decisionResult,
  decisionSeen,
  REFUND_ARGS,
  refundsOf,
  taskOfThread,
} from "../support/scripts-humans.ts";
import { blockActionsPayload } from "../support/slack-signing.ts";

let current: Harness | undefined;
afterEach(async () => {
  await current?.close();
  current = undefined;
});

// Dana asks a question; a billing lead (U0BILLINGLEAD) replies in Dana's thread asking for a
// 149 USD refund; billing asks for approval; the billing lead approves the refund they asked for.
test("a billing lead who asked for the refund in the thread may not approve it", async () => {
  const h = await startHarness({
    script: scriptByAgent({
      billing: [
        { content: "Refunds over 100 USD need a billing lead's approval." },
        { toolCalls: [{ name: "issue_refund", arguments: REFUND_ARGS }] },
        (request) => ({ content: decisionResult(decisionSeen(request)) }),
      ],
    }),
  });
  current = h;
  const { ts } = await h.mention("billing: how do refunds work?");
  await h.until("the first answer", async () =>
    h.slack.callsTo("chat.postMessage").find((c) => String(c.args.text).includes("Refunds over")),
  );
  await h.reply(ts, "please refund order 1077, 149 USD, do it now", { user: "U0BILLINGLEAD" });
  const approval = await h.until("the approval card", async () => {
    const row = await h.db.db.selectFrom("approvals").selectAll().executeTakeFirst();
    return row?.card_ts ? row : undefined;
  });
  assert.equal(approval.requester_id, REQUESTER, "the approval names only the task's starter");
  await h.click(
    blockActionsPayload({
      userId: "U0BILLINGLEAD",
      actionId: APPROVAL_APPROVE,
      value: approval.id,
      channel: CHANNEL,
      messageTs: approval.card_ts ?? "",
      threadTs: ts,
    }),
  );
  await new Promise((r) => setTimeout(r, 1500));
  const now = await h.db.db
    .selectFrom("approvals")
    .selectAll()
    .where("id", "=", approval.id)
    .executeTakeFirstOrThrow();
  const task = await taskOfThread(h.db.db, ts);
  assert.ok(task);
  // Expected: refused as their own request. Actual: approved and refunded.
  assert.equal(
    now.status,
    "pending",
    `the person who asked for the refund decided it themselves: ${now.status} by ${now.decided_by}; refunds=${(await refundsOf(h.db.db)).length}`,
  );
});
