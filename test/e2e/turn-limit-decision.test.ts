import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { agentsFileWith, type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { postsInThread, taskWithStatus, waitForApprovalCard } from "../support/observe.ts";
import { refundCall, refundsOf } from "../support/scripts-humans.ts";

// turn_limit 3: billing uses its 3 turns (the last asks for the refund), a lead approves. The
// decision starts the count afresh: the agent checks the order once more and answers (2 turns, under
// the limit). Before, the approved refund ran and the task was then failed for its turns.
const agentsFile = agentsFileWith(["turn_limit: 25", "turn_limit: 3"]);
assert.equal(agentsFile.defaults.turn_limit, 3, "agents.yml no longer sets turn_limit: 25");
let h: Harness;
before(async () => {
  h = await startHarness({
    agentsFile,
    script: scriptByAgent({
      billing: [
        { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1077" } }] },
        { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1077" } }] },
        refundCall(),
        { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1077" } }] },
        { content: "Refunded 149 USD." },
      ],
    }),
  });
});
after(async () => {
  await h.close();
});

test("after a decision the count starts afresh: two turns after it are within a limit of 3", async () => {
  const { ts } = await h.mention("billing: please refund order 1077");
  const approval = await waitForApprovalCard(h);
  await h.clickCard("U0BILLINGLEAD", APPROVAL_APPROVE, approval, ts);
  await h.until("the refund", async () => (await refundsOf(h.db.db)).length === 1 || undefined);
  const settled = await h.until(
    "the task to end",
    async () =>
      (await taskWithStatus(h.db.db, ts, "failed")) ?? (await taskWithStatus(h.db.db, ts, "done")),
  );
  const posts = postsInThread(h.slack, ts).map((p) => String(p.args.text));
  assert.equal(settled.status, "done", `${settled.failure_reason} | ${posts.join(" || ")}`);
});
