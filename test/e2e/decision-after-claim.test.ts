import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { sql } from "kysely";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { CHANNEL, type Harness, startHarness } from "../support/harness.ts";
import { type ChatRequest, scriptByAgent } from "../support/model-server.ts";
import {
  buttonsOf,
  decisionResult,
  decisionSeen,
  refundCall,
  refundsOf,
  taskOfThread,
  toolCallsOf,
} from "../support/scripts-humans.ts";

// A run that starts on a task parked on an approval (the job of a reply accepted just before the
// approval turn committed, picked up late) reads no decision at its claim. The decision commits
// after the claim but before the first turn reads the task again (here: while the run delivers the
// card Slack failed to take earlier). Before, that turn ran with the task active and the approval
// never settled: the agent answered without the refund, and nothing settled it afterwards.

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

test("a decision landing between a run's claim and its first turn is still settled before the agent speaks", {
  timeout: 60_000,
}, async () => {
  const seen: ChatRequest[] = [];
  h = await startHarness({
    script: scriptByAgent({
      billing: [
        refundCall(),
        (request) => {
          seen.push(request);
          return { content: decisionResult(decisionSeen(request)) };
        },
        { content: "spare answer" },
      ],
    }),
  });
  const harness = h;
  // Slack fails the approval card twice: the run that parked the call leaves it in the outbox.
  harness.slack.failNext("chat.postMessage", { error: "service_unavailable" }, 2);
  const { ts } = await harness.mention("billing: please refund order 1077, the lamp came back");
  const approval = await harness.until("the refund to wait on its card", async () => {
    const row = await harness.db.db.selectFrom("approvals").selectAll().executeTakeFirst();
    const task = await taskOfThread(harness.db.db, ts);
    return row && task?.status === "waiting_human" && task.lease_owner === null ? row : undefined;
  });
  const task = await taskOfThread(harness.db.db, ts);
  assert.ok(task);
  const unsent = await harness.db.db
    .selectFrom("slack_outbox")
    .selectAll()
    .where("task_id", "=", task.id)
    .where(sql<boolean>`status <> 'sent'`)
    .execute();
  assert.ok(unsent.length > 0, "the card is still in the outbox");

  // The requester adds a word while the approval waits (stored; no job while it waits).
  await harness.reply(ts, "thanks, please be quick");
  // The job a reply accepted a moment earlier (task still active) had queued, picked up late.
  await new Promise((r) => setTimeout(r, 2_500)); // the card's retry is due again
  const isCard = (c: { args: Record<string, unknown> }) =>
    buttonsOf(c as never).some((b) => b.action_id === APPROVAL_APPROVE);
  const held = harness.slack.holdAnswer("chat.postMessage", isCard as never);
  await harness.baton.deps.queue.enqueue(harness.db.db, task.id);

  // The run delivers the card; the billing lead approves it as soon as Slack shows it.
  await held.arrived;
  const cardTs = harness.slack
    .messagesIn(CHANNEL, ts)
    .find((m) => JSON.stringify(m.blocks ?? "").includes(APPROVAL_APPROVE))?.ts;
  assert.ok(cardTs);
  const click = harness.clickCard(
    "U0LEE",
    APPROVAL_APPROVE,
    { id: approval.id, card_ts: cardTs },
    ts,
  );
  await harness.until("the approval to be decided", async () => {
    const row = await harness.db.db
      .selectFrom("approvals")
      .select("status")
      .where("id", "=", approval.id)
      .executeTakeFirstOrThrow();
    return row.status === "approved";
  });
  held.release();
  await click;

  await harness.until("the task to be answered", async () => {
    const t = await taskOfThread(harness.db.db, ts);
    return t?.status === "done" && t.lease_owner === null;
  });
  const calls = await toolCallsOf(harness.db.db, task.id, "issue_refund");
  const refunds = await refundsOf(harness.db.db);
  const lastBilling = seen.at(-1);
  const toolMsgs = (lastBilling?.messages ?? []).filter((m) => m.role === "tool");
  assert.equal(calls[0]?.status, "done", "the approved refund was settled");
  assert.equal(refunds.length, 1, "the approved refund was made");
  assert.ok(toolMsgs.length > 0, "billing's next turn saw the refund's result");
});
