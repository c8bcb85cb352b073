import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { sql } from "kysely";
import type { ChatIntent } from "../../src/core/ports.ts";
import { homeData } from "../../src/db/home.repository.ts";
import { runDigest } from "../../src/runtime/digest.ts";
import { runMaintenance } from "../../src/runtime/maintenance.ts";
import { deliverOutbox } from "../../src/runtime/outbox.ts";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import {
  REJECT_REASON_ACTION,
  REJECT_REASON_BLOCK,
  REJECT_REASON_CALLBACK,
} from "../../src/slack/views/reject-modal.ts";
import {
  agentsFileWith,
  CHANNEL,
  type Harness,
  harnessPerTest,
  SUPPORT_LANE,
  startHarness,
} from "../support/harness.ts";
import { type ChatRequest, scriptByAgent } from "../support/model-server.ts";
import { waitForApprovalCard, waitForEscalationCard } from "../support/observe.ts";
import {
  answerDecision,
  blockTexts,
  buttonsOf,
  cardWithButton,
  decisionResult,
  decisionSeen,
  directRefundScript,
  ESCALATION_NOTE,
  escalationScript,
  finishedTask,
  missApprovalDeadline,
  orderReturnScript,
  REFUND_ARGS,
  refundCall,
  refundsOf,
  taskOfThread,
  toolCallsOf,
} from "../support/scripts-humans.ts";
import type { SlackCall } from "../support/slack-emulator.ts";
import { viewSubmissionPayload } from "../support/slack-signing.ts";
import { runBaton } from "../support/slash-command.ts";

// Approvals: fallback cards, a person who asked, a rejected write asked again, closing by order,
// a decision that lands between a claim and its first turn. One suite per former test file.

describe("approval-fallback-card", async () => {
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

  const isApprovalCard = (c: SlackCall) =>
    buttonsOf(c).some((b) => b.action_id === APPROVAL_APPROVE);

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
});

describe("approval-own-request-handon", async () => {
  // Nobody approves their own request, nor one they asked for in the thread: that includes the words
  // of a task they handed on to an agent. A billing lead who took an escalation over and
  // wrote "@Baton billing: refund order 1077, 149 USD" in the thread asked for that refund.

  const startHarness = harnessPerTest();

  test("a lead who handed the work to billing from the thread ('refund it') may not approve that refund", async () => {
    const agentsFile = agentsFileWith([
      SUPPORT_LANE,
      "    support:\n      users: [U0BILLINGLEAD]\n",
    ]);
    const script = escalationScript();
    script.billing = [refundCall(), { content: "done" }];
    const h = await startHarness({ script: scriptByAgent(script), agentsFile });
    const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
    const escalation = await waitForEscalationCard(h);
    await h.clickCard("U0BILLINGLEAD", ESCALATION_TAKE_OVER, escalation, ts);
    await h.until("the lead to hold the task", async () =>
      (await taskOfThread(h.db.db, ts))?.owner_id === "U0BILLINGLEAD" ? true : undefined,
    );
    await h.reply(ts, "<@U0BATONBOT> billing: refund order 1077, 149 USD, I checked it", {
      user: "U0BILLINGLEAD",
    });
    const approval = await waitForApprovalCard(h);

    await h.clickCard("U0BILLINGLEAD", APPROVAL_APPROVE, approval, ts);
    // Wait for whatever the click does: a refusal, or the decision.
    await h.until("the click to be judged", async () => {
      const row = await h.db.db
        .selectFrom("approvals")
        .select("status")
        .where("id", "=", approval.id)
        .executeTakeFirstOrThrow();
      const told = h.slack
        .callsTo("chat.postEphemeral")
        .some((c) => c.args.user === "U0BILLINGLEAD");
      return row.status !== "pending" || told ? true : undefined;
    });
    const row = await h.db.db
      .selectFrom("approvals")
      .select(["status", "decided_by"])
      .where("id", "=", approval.id)
      .executeTakeFirstOrThrow();
    assert.equal(
      row.status,
      "pending",
      `the lead who asked for the refund in the thread approved it themselves (decided_by ${row.decided_by})`,
    );
  });
});

describe("approval-own-request", async () => {
  // Dana asks billing a question; a billing lead replies in her thread asking for a 149 USD refund;
  // billing asks for approval. The lead asked for it: they may not approve it. Another lead may.

  let h: Harness;
  before(async () => {
    h = await startHarness({
      script: scriptByAgent({
        billing: [
          { content: "Refunds over 100 USD need a billing lead's approval." },
          refundCall(),
          answerDecision,
        ],
      }),
    });
  });
  after(async () => {
    await h.close();
  });

  test("a billing lead who asked for the refund in the thread may not approve it; another lead may", async () => {
    const { ts } = await h.mention("billing: how do refunds work?");
    await h.until("the first answer", async () =>
      h.slack.callsTo("chat.postMessage").find((c) => String(c.args.text).includes("Refunds over")),
    );
    await h.reply(ts, "please refund order 1077, 149 USD, do it now", { user: "U0BILLINGLEAD" });
    const approval = await waitForApprovalCard(h);
    // The card names them, as the refusal below does.
    const card = cardWithButton(h.slack, ts, APPROVAL_APPROVE);
    assert.ok(card);
    assert.match(blockTexts(card).join("\n"), /asked in the thread by <@U0BILLINGLEAD>/);

    // Their App Home does not list it as waiting on them; another lead's does.
    const waiting = async (user: string, groups: string[]) =>
      (await homeData(h.db.db, user, groups)).waitingApprovals.map((a) => a.id);
    assert.deepEqual(await waiting("U0BILLINGLEAD", []), []);
    assert.deepEqual(await waiting("U0LEE", ["S0BILLINGLEADS"]), [approval.id]);
    // Nor does the digest, once the approval is stale (past approval_stale_after, 4 h), put it in
    // their DM as waiting on them.
    await sql`update approvals set created_at = created_at - interval '5 hours'
      where id = ${approval.id}`.execute(h.db.db);
    const sent: ChatIntent[] = [];
    await runDigest(
      {
        ...h.baton.deps,
        agentsFile: h.agentsFile,
        chat: {
          ...h.baton.deps.chat,
          deliver: async (intent) => {
            sent.push(intent);
            return { ts: `${sent.length}.000000` };
          },
        },
        threadLink: h.baton.deps.chat.threadLink,
      },
      new Date(),
      "test",
    );
    const channel = sent.find((i) => i.kind === "digest");
    assert.equal(channel?.kind === "digest" && channel.digest.staleApprovals.length, 1);
    const dmed = sent.flatMap((i) => (i.kind === "digest_dm" ? [i.user] : []));
    assert.ok(!dmed.includes("U0BILLINGLEAD"), `digest DMs: ${dmed.join(", ")}`);

    await h.clickCard("U0BILLINGLEAD", APPROVAL_APPROVE, approval, ts);
    const told = await h.until("the lead to be told", async () =>
      h.slack.callsTo("chat.postEphemeral").find((c) => c.args.user === "U0BILLINGLEAD"),
    );
    assert.match(String(told.args.text), /^You asked for this \(you wrote in its thread\)/);
    const still = await h.db.db
      .selectFrom("approvals")
      .select("status")
      .where("id", "=", approval.id)
      .executeTakeFirstOrThrow();
    assert.equal(still.status, "pending");
    const refused = await h.db.db
      .selectFrom("audit_events")
      .select("data")
      .where("kind", "=", "approval_refused")
      .executeTakeFirstOrThrow();
    assert.equal((refused.data as { reason?: string }).reason, "own_request");

    // U0LEE, a member of the billing leads' group, wrote nothing in the thread.
    await h.clickCard("U0LEE", APPROVAL_APPROVE, approval, ts);
    await h.until("the task to finish", () => finishedTask(h.db.db, ts), 30_000);
    assert.equal((await refundsOf(h.db.db)).length, 1);
  });
});

describe("approval-rejected-retry", async () => {
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
          [REJECT_REASON_BLOCK]: {
            [REJECT_REASON_ACTION]: "Too much: at most 60 USD, it was worn",
          },
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
});

describe("close-task-by-order", async () => {
  const startHarness = harnessPerTest();

  // `/baton done <order>` judged the order's newest task: a later question about the order, answered
  // by an agent in another thread, hid the task the person held, and they were told nothing matched.

  const LEAD = "U0SUPPORTLEAD";

  test("/baton done <order> closes the order's task the person holds, as /baton status finds it", async () => {
    const lookup = { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1077" } }] };
    const h = await startHarness({
      script: scriptByAgent({
        "customer-service": [
          lookup,
          { toolCalls: [{ name: "escalate_to_human", arguments: ESCALATION_NOTE }] },
          lookup,
          { content: "Order 1077 was delivered on Monday." },
        ],
      }),
    });
    // T1: the safety case, escalated to #support, taken over by its lead.
    const first = await h.mention("the lamp from order 1077 caught fire, I want compensation");
    const escalation = await waitForEscalationCard(h);
    await h.clickCard(LEAD, ESCALATION_TAKE_OVER, escalation, first.ts);
    const t1 = await h.until("the lead to hold T1", async () => {
      const t = await taskOfThread(h.db.db, first.ts);
      return t?.owner_id === LEAD ? t : undefined;
    });
    // T2: someone else later asks about the same order in another thread; the agent answers.
    const second = await h.mention("when was order 1077 delivered?", { user: "U0COLLEAGUE" });
    await h.until("T2 answered", async () => {
      const t = await taskOfThread(h.db.db, second.ts);
      return t?.status === "done" ? t : undefined;
    });

    // From the support lane's channel, where the lead works T1.
    const status = await runBaton(h, "status 1077", { user: LEAD, channel: "C0SUPPORT" });
    assert.match(status.text, new RegExp(t1.id));
    const done = await runBaton(h, "done 1077", { user: LEAD, channel: "C0SUPPORT" });
    const after = await taskOfThread(h.db.db, first.ts);
    assert.match(done.text, /^Done: /);
    assert.equal(after?.status, "done", `the lead's task T1 stays open; Baton said: ${done.text}`);
  });
});

describe("decision-after-claim", async () => {
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
});
