import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import { sql } from "kysely";
import { loadAgentsFile } from "../../src/config/agents-file.ts";
import type { ToolDefinition } from "../../src/core/tools/tool.ts";
import { findApproval } from "../../src/db/approvals.repository.ts";
import { insertInput } from "../../src/db/turn-reads.repository.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { auditStory } from "../../src/runtime/audit-story.ts";
import { wakeIfMissed } from "../../src/runtime/missed-runs.ts";
import { deliverOutbox } from "../../src/runtime/outbox.ts";
import { APPROVAL_APPROVE, APPROVAL_REJECT } from "../../src/slack/views/approval-card.ts";
import {
  ESCALATION_SEND_BACK,
  ESCALATION_TAKE_OVER,
} from "../../src/slack/views/escalation-card.ts";
import {
  REJECT_REASON_ACTION,
  REJECT_REASON_BLOCK,
  REJECT_REASON_CALLBACK,
  SEND_BACK_CALLBACK,
} from "../../src/slack/views/reject-modal.ts";
import { testServerUrl } from "../support/db.ts";
import {
  agentsFileWith,
  CHANNEL,
  type Harness,
  harnessPerTest,
  REQUESTER,
  SUPPORT_LANE,
  startHarness,
} from "../support/harness.ts";
import { type Script, scriptByAgent } from "../support/model-server.ts";
import {
  taskWithStatus,
  textOf,
  toolMessages,
  waitForApprovalCard,
  waitForEscalationCard,
} from "../support/observe.ts";
import * as threads from "../support/outbox-threads.ts";
import { answerThenReply } from "../support/scripts.ts";
import {
  answerDecision,
  auditKinds,
  blocksOf,
  blockTexts,
  buttonsOf,
  cardWithButton,
  directRefundScript,
  escalationScript,
  finishedTask,
  lastToolMessage,
  refundCall,
  refundsOf,
  sendBackSubmission,
  taskOfThread,
  toolCallsOf,
} from "../support/scripts-humans.ts";
import type { SlackCall } from "../support/slack-emulator.ts";
import { blockActionsPayload, viewSubmissionPayload } from "../support/slack-signing.ts";
import { startPostgresProxy } from "../support/tcp-proxy.ts";

// Approval cards and what a click on them does: who asked, races, split refunds, a tool removed,
// a repeated write, decisions answered first or beside a reply, forms that must open in time, a
// click on a card the sweep is still sending. One suite per former test file.

describe("approval-card-askers", async () => {
  // Dana asks about a lamp that caught fire; Customer Service escalates; a billing lead hands the work
  // to Billing with "refund order 1077, 149 USD". Billing's refund waits on an approval whose card
  // said "Requested by Dana" only, as if she had asked for that refund. It names the lead who handed
  // the work on too, and the lead, who asked for it, is told so when they click Approve.

  const LEAD = "U0BILLINGLEAD";
  const INSTRUCTION = "refund order 1077, 149 USD, I checked it";

  const startHarness = harnessPerTest();

  /** The support lane's escalations go to the billing lead, who may also approve refunds. */
  async function escalatedToLead() {
    const script = escalationScript();
    script.billing = [refundCall(), answerDecision];
    const agentsFile = agentsFileWith([SUPPORT_LANE, `    support:\n      users: [${LEAD}]\n`]);
    const h = await startHarness({ script: scriptByAgent(script), agentsFile });
    const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
    const escalation = await waitForEscalationCard(h);
    return { h, ts, escalation };
  }

  async function approvalCard(h: Harness, ts: string) {
    const approval = await waitForApprovalCard(h);
    const card = cardWithButton(h.slack, ts, APPROVAL_APPROVE);
    assert.ok(card, "the approval card is in the thread");
    return { approval, text: blockTexts(card).join("\n") };
  }

  /** The card names both who started the task and who handed its work on to the agent. */
  function assertNamesBoth(text: string) {
    assert.match(text, new RegExp(`Requested by <@${REQUESTER}>`));
    assert.match(text, new RegExp(`handed on by <@${LEAD}>`), text);
  }

  test("sent back from the escalation card: the approval card names the lead who handed it on; they may not approve", async () => {
    const { h, ts, escalation } = await escalatedToLead();
    await h.click(
      sendBackSubmission({
        userId: LEAD,
        escalationId: escalation.id,
        agent: { id: "billing", name: "Billing" },
        instruction: INSTRUCTION,
      }),
    );
    const { approval, text } = await approvalCard(h, ts);
    assertNamesBoth(text);
    const [requested] = await auditKinds(h.db.db, approval.task_id, "approval_requested");
    assert.deepEqual(requested?.data.asked_by, {
      requester: REQUESTER,
      handed_on_by: [LEAD],
      in_thread: [],
    });

    await h.clickCard(LEAD, APPROVAL_APPROVE, approval, ts);
    const told = await h.until("the lead to be told", async () =>
      h.slack.callsTo("chat.postEphemeral").find((c) => c.args.user === LEAD),
    );
    assert.match(String(told.args.text), /^You asked for this \(you handed the work on/);
    const [refused] = await auditKinds(h.db.db, approval.task_id, "approval_refused");
    assert.deepEqual(refused?.data, {
      approval_id: approval.id,
      reason: "own_request",
      asked_as: "handed_on",
      decision: "approved",
    });

    await h.clickCard("U0LEE", APPROVAL_APPROVE, approval, ts);
    await h.until("the task to finish", () => finishedTask(h.db.db, ts), 30_000);
    assert.equal((await refundsOf(h.db.db)).length, 1);
    const decided = h.slack
      .callsTo("chat.update")
      .filter((c) => !c.failed && c.args.channel === CHANNEL && c.args.ts === approval.card_ts)
      .at(-1);
    assert.ok(decided, "the card is updated in place");
    const updated = blockTexts(decided).join("\n");
    assert.match(updated, /Approved by <@U0LEE>/);
    assertNamesBoth(updated);
    // The audit trail names them as the card did.
    const story = (await auditStory(h.baton.deps, approval.task_id)).entries.map((e) => e.text);
    assert.ok(
      story.some((t) => t.includes(`requested by human:${REQUESTER}, handed on by human:${LEAD}`)),
      story.join("\n"),
    );
    assert.ok(
      story.includes(
        `Approval click refused: ${LEAD} asked for it (handed the work on), so may not decide it`,
      ),
      story.join("\n"),
    );
  });

  test("handed on in the thread after a take-over: the approval card names the lead", async () => {
    const { h, ts, escalation } = await escalatedToLead();
    await h.clickCard(LEAD, ESCALATION_TAKE_OVER, escalation, ts);
    await h.until("the lead to hold the task", async () =>
      (await taskOfThread(h.db.db, ts))?.owner_id === LEAD ? true : undefined,
    );
    await h.reply(ts, `<@U0BATONBOT> billing: ${INSTRUCTION}`, { user: LEAD });
    const { text } = await approvalCard(h, ts);
    assertNamesBoth(text);
  });
});

describe("approval-card-race", async () => {
  // A person can decide on a card as soon as Slack shows it, which may be before Baton has Slack's
  // answer (the card's ts) and has saved it. Whatever the order, the one card is updated once.

  const startHarness = harnessPerTest();

  const isApprovalCard = (c: SlackCall) =>
    buttonsOf(c).some((b) => b.action_id === APPROVAL_APPROVE);

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
});

describe("approval-split-refund", async () => {
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
});

describe("approved-tool-removed", async () => {
  // An approval waits on a call of an HTTP tool; the operator takes the tool out of the agents file
  // and reloads it (SIGHUP); then a lead clicks Approve. The call cannot run: before, the job threw on
  // every retry until the task was dead-lettered. Now the reload cancels the approval, the agent is
  // told, and answers; the late click decides nothing.

  let refundsAsked = 0;
  const crm = createServer((req, res) => {
    refundsAsked++;
    req.resume();
    res.writeHead(200, { "content-type": "application/json" }).end("{}");
  });

  /** The agents file: the CRM tool defined or not, listed by the refunder or not, shadow or not. */
  const file = (
    crmUrl: string,
    o: { defined?: boolean; listed?: boolean; shadow?: boolean } = {},
  ) => {
    const { defined = true, listed = defined, shadow = false } = o;
    return `
defaults:
  entry_agent: refunder
agents:
  - id: refunder
    name: Refunder
    icon: ":moneybag:"
    instructions: Refund the customer.${shadow ? "\n    autonomy: shadow" : ""}
    tools: [${listed ? "crm_refund" : "lookup_order"}]
policies:
  approvals:${defined ? "\n    - id: crm-refunds\n      tool: crm_refund\n      approvers: { users: [U0LEE] }" : " []"}
${
  defined
    ? `tools:
  - name: crm_refund
    description: Refund through the CRM.
    class: write
    url: ${crmUrl}/refunds
    parameters: { type: object, properties: { amount_usd: { type: number } } }`
    : ""
}
`;
  };

  let told = "";
  const script: Script = (request) => {
    const result = request.messages.filter((m) => m.role === "tool").at(-1);
    if (!result) return { toolCalls: [{ name: "crm_refund", arguments: { amount_usd: 20 } }] };
    told = textOf(result);
    return { content: "Sorry, I could not refund you: a person will follow up." };
  };

  let dir: string;
  let agentsPath: string;
  let crmUrl: string;
  let h: Harness;
  before(async () => {
    await new Promise<void>((resolve) => crm.listen(0, "127.0.0.1", resolve));
    dir = await mkdtemp(path.join(tmpdir(), "baton-tool-gone-"));
    agentsPath = path.join(dir, "agents.yml");
    crmUrl = `http://127.0.0.1:${(crm.address() as AddressInfo).port}`;
    await writeFile(agentsPath, file(crmUrl));
    h = await startHarness({
      script,
      agentsFile: await loadAgentsFile(agentsPath, demoTools),
      agentsPath,
      jobRetries: 1,
    });
  });
  after(async () => {
    await h.close();
    crm.close();
    await rm(dir, { recursive: true, force: true });
  });

  /**
   * Asks for a refund, lets its approval wait, reloads the agents file as `changed`, then clicks
   * Approve. Returns what the agent was told, the call's status and the approval's; the file is put
   * back after.
   */
  async function clickedAfterReload(changed: string, order: string) {
    told = "";
    const { ts } = await h.mention(`refund 20 USD for order ${order} please`);
    const approval = await h.until("the approval card", async () => {
      const row = await h.db.db
        .selectFrom("approvals")
        .selectAll()
        .where("status", "=", "pending")
        .executeTakeFirst();
      return row?.card_ts ? row : undefined;
    });
    await writeFile(agentsPath, changed);
    assert.equal(await h.baton.reloadAgents(), true);
    await h.clickCard("U0LEE", APPROVAL_APPROVE, approval, ts);
    const task = await h.until("the answer", () => taskWithStatus(h.db.db, ts, "done"));
    await writeFile(agentsPath, file(crmUrl));
    assert.equal(await h.baton.reloadAgents(), true);
    const call = await h.db.db
      .selectFrom("tool_calls")
      .select("status")
      .where("task_id", "=", task.id)
      .where("tool", "=", "crm_refund")
      .executeTakeFirstOrThrow();
    const decided = await findApproval(h.db.db, approval.id);
    return { told, status: call.status, approval: decided?.status };
  }

  test("a waiting call whose tool was taken out of the agents file is cancelled, not run, and the agent is told", async () => {
    const { told, status, approval } = await clickedAfterReload(
      file(crmUrl, { defined: false }),
      "1077",
    );
    assert.match(
      told,
      /not run, and nobody can approve it now: the agents file no longer lets Refunder crm refund/,
    );
    assert.equal(status, "not_run");
    assert.equal(approval, "cancelled", "the click after the reload approved nothing");
    assert.equal(refundsAsked, 0, "the removed tool's endpoint was never called");
  });

  test("a waiting call its agent may no longer make, or makes in shadow mode now, is cancelled", async () => {
    const unlisted = await clickedAfterReload(file(crmUrl, { listed: false }), "1078");
    assert.match(unlisted.told, /not run, .*no longer lets Refunder crm refund/);
    assert.equal(unlisted.status, "not_run");
    const shadow = await clickedAfterReload(file(crmUrl, { shadow: true }), "1079");
    assert.match(shadow.told, /not run, .*put Refunder in shadow mode/);
    assert.equal(shadow.approval, "cancelled");
    assert.equal(refundsAsked, 0, "the endpoint was never called");
  });
});

describe("repeated-write-call", async () => {
  // An operator's write tool with an outside effect, which does not guard itself: it counts its runs.
  const runs: string[] = [];
  const tools: ToolDefinition[] = demoTools.map((t) =>
    t.name === "issue_refund"
      ? {
          ...t,
          run: async (ctx, input) => {
            runs.push(ctx.idempotencyKey);
            return t.run(ctx, input);
          },
        }
      : t,
  );

  // Over 100 USD: it waits for a billing lead (agents.yml).
  const bigRefund = {
    name: "issue_refund",
    arguments: { order_id: "1077", amount_usd: 149, reason: "the lamp caught fire" },
  };

  // The same refund twice in one reply, under two ids and with its arguments in another order.
  const script = scriptByAgent({
    billing: [
      {
        toolCalls: [
          {
            id: "call_a",
            name: "issue_refund",
            arguments: { order_id: "1077", amount_usd: 40, reason: "lamp came back broken" },
          },
          {
            id: "call_b",
            name: "issue_refund",
            arguments: '{"reason": "lamp came back broken", "amount_usd": 40, "order_id": "1077"}',
          },
        ],
      },
      { content: "Refunded 40 USD for order 1077." },
      {
        toolCalls: [
          { id: "call_c", ...bigRefund },
          { id: "call_d", ...bigRefund },
        ],
      },
    ],
  });

  let h: Harness;
  before(async () => {
    h = await startHarness({ tools, script });
  });
  after(async () => {
    await h.close();
  });

  test("a write repeated in one reply under another id runs once; both ids are answered", async () => {
    const { ts } = await h.mention(
      "billing: refund 40 USD on order 1077, the lamp came back broken",
    );
    const task = await h.until("the task to finish", () =>
      taskWithStatus(h.db.db, ts, "done", "failed"),
    );
    assert.equal(task.status, "done", task.failure_reason ?? "");
    assert.equal(runs.length, 1, `the tool ran under keys ${runs.join(", ")}`);
    const calls = await h.db.db
      .selectFrom("tool_calls")
      .select(["tool", "status"])
      .where("task_id", "=", task.id)
      .execute();
    assert.deepEqual(calls, [{ tool: "issue_refund", status: "done" }]);

    const second = h.model.requestsFor("billing")[1];
    assert.ok(second, "the model was asked again after the calls");
    const answers = toolMessages(second.body);
    assert.deepEqual(
      answers.map((m) => m.tool_call_id),
      ["call_a", "call_b"],
      "every call id gets its answer",
    );
    const [first, repeat] = answers.map((m) => JSON.parse(textOf(m)) as Record<string, unknown>);
    assert.ok(first?.refund_id, `the first call's result: ${JSON.stringify(first)}`);
    assert.match(String(repeat?.repeat_of), /call_a/);
    assert.equal(
      repeat?.note,
      "The same call as call_a in this reply, so not repeated: its answer stands.",
    );
    assert.deepEqual(repeat?.result, first, "the repeat reads the first call's result");
  });

  test("a write repeated in one reply waits on one approval, and its repeat is answered", async () => {
    const { ts } = await h.mention("billing: refund order 1077 in full, the lamp caught fire");
    const task = await h.until("the task to wait on an approval", () =>
      taskWithStatus(h.db.db, ts, "waiting_human", "failed", "done"),
    );
    assert.equal(task.status, "waiting_human", task.failure_reason ?? "");
    const approvals = await h.db.db
      .selectFrom("approvals")
      .select("id")
      .where("task_id", "=", task.id)
      .execute();
    assert.equal(approvals.length, 1, "one card for one refund");
    const answers = await h.db.db
      .selectFrom("conversation")
      .select("message")
      .where("task_id", "=", task.id)
      .execute();
    const repeat = answers
      .map((row) => row.message as { role: string; tool_call_id?: string; content?: string })
      .find((m) => m.role === "tool" && m.tool_call_id === "call_d");
    assert.match(String(repeat?.content), /"repeat_of":"call_c"/);
  });
});

describe("decision-answered-first", async () => {
  // Slack shows a click as failed when its answer takes over 3 s, and the answer waits for the
  // listener (processBeforeResponse). What it waits for is the decision; the card update and any
  // words to the person follow it, and what fails there is no longer told as "nothing was done".

  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  async function parkedRefund(h: Harness) {
    const { ts } = await h.mention("billing: please refund order 1077, the lamp came back");
    const approval = await waitForApprovalCard(h, "the refund to wait on its card");
    return { ts, approval };
  }

  test("an approve click is answered while Slack still holds the card's update", {
    timeout: 30_000,
  }, async () => {
    const h = await startHarness({ script: scriptByAgent(directRefundScript()) });
    cleanups.push(h.close);
    const { ts, approval } = await parkedRefund(h);
    const held = h.slack.holdAnswer("chat.update");
    // Were the answer to wait for the update, this would hang until the test's timeout.
    const answered = await h.clickCard("U0LEE", APPROVAL_APPROVE, approval, ts);
    assert.equal(answered.status, 200);
    await held.arrived;
    held.release();
    await h.until("the task to finish", () => finishedTask(h.db.db, ts), 30_000);
    const update = await h.slack.waitForCall("chat.update", (c) => c.args.ts === approval.card_ts);
    assert.match(JSON.stringify(update.args), /Approved by/);
    assert.equal((await refundsOf(h.db.db)).length, 1);
  });

  test("a decision that committed is not told 'nothing was done' when the database goes during its card update", async () => {
    const proxy = await startPostgresProxy(await testServerUrl());
    cleanups.push(proxy.close);
    const h = await startHarness({
      databaseUrl: proxy.urlOf,
      script: scriptByAgent(directRefundScript()),
    });
    cleanups.push(h.close);
    const { ts, approval } = await parkedRefund(h);
    // No worker: only the click's own delivery sends the card update.
    await h.restart({ workers: false });

    const held = h.slack.holdAnswer("chat.update");
    assert.equal((await h.clickCard("U0LEE", APPROVAL_APPROVE, approval, ts)).status, 200);
    await held.arrived;
    // Slack took the update; the database goes away before the delivery marks it sent.
    proxy.cut();
    held.release();
    await h.baton.deps.afterwards.drain();
    proxy.restore();

    const decided = await h.db.db
      .selectFrom("approvals")
      .select("status")
      .where("id", "=", approval.id)
      .executeTakeFirstOrThrow();
    assert.equal(decided.status, "approved");
    const told = h.slack.callsTo("chat.postEphemeral").filter((c) => c.args.user === "U0LEE");
    assert.deepEqual(
      told.map((c) => String(c.args.text)),
      [],
      "the approver's decision stands; nothing says otherwise",
    );

    await h.restart({ workers: true });
    await h.until("the task to finish", () => finishedTask(h.db.db, ts), 30_000);
    assert.equal((await refundsOf(h.db.db)).length, 1, "the refund is made once");
  });
});

describe("reply-beside-decision", async () => {
  // A reply to a task waiting on an approval is read without the task's lock, and queues no run: the
  // run after the decision reads it. If a decision and that whole run fall between the accept's read
  // and its commit, the run ends the task without seeing the reply, and gives it up before the reply
  // is visible. The accept checks again after its commit (wakeIfMissed); this test sets up the state
  // that race leaves (an answered task, a reply nobody read) and calls the check as the accept does.

  let h: Harness;
  const { script, asked } = answerThenReply();
  before(async () => {
    h = await startHarness({ script });
  });
  after(async () => {
    await h.close();
  });

  test("a reply that an ending run could not see is answered after the accept commits", async () => {
    const { ts } = await h.mention("where is order 1042?");
    const task = await h.until("the first answer", () => finishedTask(h.db.db, ts));
    await h.db.db
      .transaction()
      .execute((tx) =>
        insertInput(tx, { taskId: task.id, authorId: "U0REQUESTER", text: "and order 1078?" }),
      );

    await wakeIfMissed(h.baton.deps, task.id);

    await h.until("the reply to be answered", async () => (asked.length === 2 ? true : undefined));
    assert.match(asked[1] ?? "", /and order 1078\?/);
    await h.until("the task to be answered again", async () => {
      const again = await finishedTask(h.db.db, ts);
      return again && again.step_no > task.step_no ? again : undefined;
    });
  });

  test("a task still waiting on its approval is left to the decision's run", async () => {
    const { ts } = await h.mention("where is order 1077?");
    const task = await h.until("the answer", () => finishedTask(h.db.db, ts));
    await h.db.db
      .updateTable("tasks")
      .set({ status: "waiting_human" })
      .where("id", "=", task.id)
      .execute();
    await h.db.db
      .transaction()
      .execute((tx) =>
        insertInput(tx, { taskId: task.id, authorId: "U0REQUESTER", text: "hello?" }),
      );
    const jobs = async () => {
      const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from pgboss.job
      where name = 'task.run' and data->>'taskId' = ${task.id}`.execute(h.db.db);
      return rows[0]?.n ?? 0;
    };
    const queued = await jobs();

    await wakeIfMissed(h.baton.deps, task.id);

    assert.equal(await jobs(), queued, "no run is queued for it");
    const after = await h.db.db
      .selectFrom("tasks")
      .select("status")
      .where("id", "=", task.id)
      .executeTakeFirstOrThrow();
    assert.equal(after.status, "waiting_human");
  });
});

describe("reject-form-slow-check", async () => {
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
});

describe("send-back-form-slow-check", async () => {
  // Send back, like Reject, checked the clicker before opening its form, and the check of a lane
  // owned by a channel asks Slack for the channel's members: a slow answer let the 3 s trigger_id
  // run out, and the person saw "Something went wrong" instead of the form.

  /** Well inside Slack's 3 s, leaving time for the request to Slack and back. */
  const OPENS_WITHIN_MS = 2_000;

  let h: Harness | undefined;
  let releaseMembers = () => {};
  afterEach(async () => {
    releaseMembers();
    await h?.close();
    h = undefined;
  });

  /** An escalation to the support lane (#support: U0SUPPORTLEAD, U0OTHER), and Slack slow to list it. */
  async function escalatedWithSlowChannel() {
    const harness = await startHarness({ script: scriptByAgent(escalationScript()) });
    h = harness;
    const { ts } = await harness.mention(
      "the lamp from order 1077 caught fire, I want compensation",
    );
    const escalation = await waitForEscalationCard(harness);
    const slow = harness.slack.holdAnswer("conversations.members");
    releaseMembers = slow.release;
    return { h: harness, ts, escalation, slow };
  }

  test("a Send back whose check waits on Slack still opens the form in time", async () => {
    const { h, ts, escalation, slow } = await escalatedWithSlowChannel();
    const clickedAt = Date.now();
    const clicked = h.clickCard("U0SUPPORTLEAD", ESCALATION_SEND_BACK, escalation, ts);
    await slow.arrived;
    const opened = await h.slack.waitForCall("views.open", () => true, OPENS_WITHIN_MS);
    assert.ok(opened.at - clickedAt < OPENS_WITHIN_MS);
    assert.equal((opened.args.view as { callback_id: string }).callback_id, SEND_BACK_CALLBACK);
    slow.release();
    assert.equal((await clicked).status, 200);
    // The lead sends it back: once the agent holds the task, the check has long answered.
    const submitted = await h.click(
      sendBackSubmission({
        userId: "U0SUPPORTLEAD",
        escalationId: escalation.id,
        agent: { id: "customer-service", name: "Customer Service" },
        instruction: "Send a replacement lamp.",
      }),
    );
    assert.equal(submitted.status, 200);
    await h.until("Customer Service to hold the task again", async () => {
      const task = await h.db.db.selectFrom("tasks").select("owner_id").executeTakeFirstOrThrow();
      return task.owner_id === "customer-service" || undefined;
    });
    assert.equal(
      h.slack.callsTo("views.update").length,
      0,
      "a lane member's form is left as it is",
    );
  });

  test("a person outside the lane, checked slowly, sees the Send back form turn into the refusal", async () => {
    const { h, ts, escalation, slow } = await escalatedWithSlowChannel();
    const clicked = h.clickCard("U0RANDOM", ESCALATION_SEND_BACK, escalation, ts);
    await slow.arrived;
    await h.slack.waitForCall("views.open", () => true, OPENS_WITHIN_MS);
    slow.release();
    assert.equal((await clicked).status, 200);
    const updated = await h.slack.waitForCall("views.update");
    const refusal = JSON.stringify(updated.args.view);
    assert.match(refusal, /Send back/);
    assert.doesNotMatch(refusal, /"submit"/, "nothing left to submit");
    await h.until("the ephemeral refusal", async () =>
      h.slack.callsTo("chat.postEphemeral").find((c) => c.args.user === "U0RANDOM"),
    );
  });
});

describe("sweep-card-lock", async () => {
  // A deliverer sends many rows in one transaction, a Slack call each. A card it sends has its ts
  // saved on the approval's row; were that saved at once, the row would stay locked through every
  // later Slack call of the pass, and a click on the card would wait behind them (Slack shows a
  // click answered after 3 s as failed). Saved at the pass's end, it is still there for an update
  // of the card later in the same pass.

  const startHarness = harnessPerTest();

  /**
   * A refund parked on its card, as a worker that died after Slack took the card leaves it: the
   * card's row is not marked sent, nor its ts saved. The next delivery finds the card in Slack.
   */
  async function cardNotMarkedSent() {
    const h = await startHarness({ script: scriptByAgent(directRefundScript()) });
    const { ts } = await h.mention("billing: please refund order 1077, the lamp came back");
    const parked = await waitForApprovalCard(h, "the refund to wait on its card");
    // A sweep leaves alone the rows of a task a worker holds.
    await h.until("the run to let the task go", async () => {
      const task = await h.db.db
        .selectFrom("tasks")
        .select(["status", "lease_owner"])
        .where("id", "=", parked.task_id)
        .executeTakeFirstOrThrow();
      return task.status === "waiting_human" && task.lease_owner === null;
    });
    await h.db.db
      .updateTable("slack_outbox")
      .set({ status: "retry", attempts: 1, slack_ts: null, sent_at: null })
      .where("task_id", "=", parked.task_id)
      .where("method", "=", "approval_card")
      .execute();
    await h.db.db
      .updateTable("approvals")
      .set({ card_channel: null, card_ts: null })
      .where("id", "=", parked.id)
      .execute();
    return { h, ts, parked };
  }

  async function approved(h: Harness, approvalId: string) {
    const row = await h.db.db
      .selectFrom("approvals")
      .select("status")
      .where("id", "=", approvalId)
      .executeTakeFirstOrThrow();
    return row.status === "approved";
  }

  /** Once the task is done: the card was posted once, its ts saved, and one update decided it. */
  async function assertOneCardUpdatedOnce(
    h: Harness,
    ts: string,
    card: { id: string; card_ts: string | null },
  ) {
    await h.until(
      "the task to finish",
      async () => {
        // As the maintenance sweep does every 15 s (off in tests): a row the resumed run found in
        // the test's sweep's hands, and that sweep then left to the run holding the task, goes
        // out with the next sweep (seen once on a loaded machine).
        await deliverOutbox(h.baton.deps, { olderThanMs: 0 });
        return finishedTask(h.db.db, ts);
      },
      30_000,
    );
    const cards = h.slack
      .callsTo("chat.postMessage")
      .filter((c) => !c.failed && buttonsOf(c).some((b) => b.action_id === APPROVAL_APPROVE));
    assert.equal(cards.length, 1, "the card found in Slack is not posted again");
    const saved = await h.db.db
      .selectFrom("approvals")
      .select("card_ts")
      .where("id", "=", card.id)
      .executeTakeFirstOrThrow();
    assert.equal(saved.card_ts, card.card_ts, "the card's ts is saved");
    const updates = h.slack.callsTo("chat.update").filter((c) => !c.failed);
    assert.equal(updates.length, 1, "the card is updated once");
    assert.equal(updates[0]?.args.ts, card.card_ts, "the update is the card's own message");
    assert.match(blockTexts(updates[0] as SlackCall).join("\n"), /Approved by <@U0LEE>/);
  }

  test("a click on a card the sweep just sent is decided while the sweep waits on Slack for a later row", async () => {
    const { h, ts, parked } = await cardNotMarkedSent();
    // Another task's message, after the card in the outbox: Slack holds its answer.
    const other = await threads.newThread(h.db.db, h.slack);
    await threads.say(h.db.db, other, "later");
    const held = h.slack.holdAnswer("chat.postMessage", (c) => c.args.text === "later");

    const sweep = deliverOutbox(h.baton.deps, { olderThanMs: 0 });
    try {
      await held.arrived;
      const free = await h.db.db
        .selectFrom("slack_outbox")
        .select("id")
        .where("task_id", "=", parked.task_id)
        .where("status", "<>", "sent")
        .forUpdate()
        .skipLocked()
        .execute();
      assert.deepEqual(free, [], "the sweep has the card's row in hand");
      const clicked = h.clickCard("U0LEE", APPROVAL_APPROVE, parked, ts);
      await h.until("the click to decide while the sweep waits on Slack", () =>
        approved(h, parked.id),
      );
      assert.equal((await clicked).status, 200);
    } finally {
      held.release();
      await sweep;
    }

    await assertOneCardUpdatedOnce(h, ts, parked);
    assert.deepEqual(threads.threadTexts(h.slack, other.ts), ["later"]);
  });

  test("a decision on a card not yet marked sent updates that card when one pass sends both", async () => {
    const { h, ts, parked } = await cardNotMarkedSent();
    // Decided before any delivery has found the card: its update waits in the outbox behind it.
    assert.equal((await h.clickCard("U0LEE", APPROVAL_APPROVE, parked, ts)).status, 200);
    assert.ok(await approved(h, parked.id));

    await assertOneCardUpdatedOnce(h, ts, parked);
  });
});
