import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { loadAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { APPROVAL_APPROVE, APPROVAL_REJECT } from "../../src/slack/views/approval-card.ts";
import {
  REJECT_REASON_ACTION,
  REJECT_REASON_BLOCK,
  REJECT_REASON_CALLBACK,
} from "../../src/slack/views/reject-modal.ts";
import { CHANNEL, type Harness, harnessPerTest, REQUESTER } from "../support/harness.ts";
import { type AgentReply, scriptByAgent } from "../support/model-server.ts";
import { waitForApprovalCard, warnings } from "../support/observe.ts";
import {
  auditKinds,
  blocksOf,
  blockTexts,
  directRefundScript,
  finishedTask,
  HOSTILE_BODY,
  hostileNoteScript,
  INJECTION,
  injectionScript,
  lastToolMessage,
  refundsOf,
  sendCustomerNote,
  taskOfThread,
  toolCallsOf,
  withCustomerNotes,
} from "../support/scripts-humans.ts";
import { blockActionsPayload, viewSubmissionPayload } from "../support/slack-signing.ts";

const startHarness = harnessPerTest();

async function start(
  replies: Record<string, AgentReply[]> = directRefundScript(),
  extra: Partial<Parameters<typeof startHarness>[0]> = {},
): Promise<Harness> {
  return startHarness({ script: scriptByAgent(replies), ...extra });
}

/** "@Baton billing: ..." goes straight to billing, which asks for the refund; the card is in Slack. */
async function parked(h: Harness, text = "billing: please refund order 1077, the lamp came back") {
  const { ts } = await h.mention(text);
  const approval = await waitForApprovalCard(h, "the approval card to be in Slack");
  const task = await taskOfThread(h.db.db, ts);
  assert.ok(task);
  return { ts, task, approval };
}

type Parked = Awaited<ReturnType<typeof parked>>;

function click(h: Harness, p: Parked, userId: string, actionId = APPROVAL_APPROVE) {
  return h.click(
    blockActionsPayload({
      userId,
      actionId,
      value: p.approval.id,
      channel: CHANNEL,
      messageTs: p.approval.card_ts ?? "",
      threadTs: p.ts,
    }),
  );
}

function submitReason(h: Harness, p: Parked, userId: string, reason: string) {
  return h.click(
    viewSubmissionPayload({
      userId,
      callbackId: REJECT_REASON_CALLBACK,
      privateMetadata: p.approval.id,
      values: { [REJECT_REASON_BLOCK]: { [REJECT_REASON_ACTION]: reason } },
    }),
  );
}

async function approvalNow(h: Harness, p: Parked) {
  return h.db.db
    .selectFrom("approvals")
    .selectAll()
    .where("id", "=", p.approval.id)
    .executeTakeFirstOrThrow();
}

function ephemeralsTo(h: Harness, user: string) {
  return h.slack.callsTo("chat.postEphemeral").filter((c) => c.args.user === user);
}

/** The `n`th ephemeral (1-based) shown to `user`, once it is there. */
function ephemeralTo(h: Harness, user: string, n = 1) {
  return h.until(`ephemeral ${n} to ${user}`, async () => ephemeralsTo(h, user)[n - 1]);
}

function decidedApproval(h: Harness, p: Parked) {
  return h.until("the approval to be decided", async () => {
    const row = await approvalNow(h, p);
    return row.status === "pending" ? undefined : row;
  });
}

function finished(h: Harness, p: Parked) {
  return h.until("the task to finish and say so", () => finishedTask(h.db.db, p.ts));
}

test("an unauthorized approver is refused with an ephemeral; the request stays pending", async () => {
  const h = await start();
  const p = await parked(h);

  await click(h, p, "U0RANDOM");
  const refusal = await ephemeralTo(h, "U0RANDOM");
  assert.equal(refusal.args.channel, CHANNEL);
  assert.match(String(refusal.args.text), /^Only .* may decide on `issue_refund`/);
  assert.match(String(refusal.args.text), /<!subteam\^S0BILLINGLEADS>/);
  assert.match(String(refusal.args.text), /<@U0BILLINGLEAD>/);
  assert.equal((await approvalNow(h, p)).status, "pending");
  const refused = await auditKinds(h.db.db, p.task.id, "approval_refused");
  assert.deepEqual(
    refused.map((e) => [e.actor_id, e.data.reason, e.data.decision]),
    [["U0RANDOM", "not_an_approver", "approved"]],
  );

  // Reject is refused the same way, before a modal asks for a reason nobody will use.
  await click(h, p, "U0RANDOM", APPROVAL_REJECT);
  const second = await ephemeralTo(h, "U0RANDOM", 2);
  assert.match(String(second.args.text), /^Only .* may decide/);
  assert.equal(h.slack.callsTo("views.open").length, 0, "no reason modal for a non-approver");
  assert.equal((await approvalNow(h, p)).status, "pending");
  assert.equal((await auditKinds(h.db.db, p.task.id, "approval_refused")).length, 2);
  assert.equal((await refundsOf(h.db.db)).length, 0);

  // A named user (not in the group) still decides: the request was not used up by the refusals.
  await click(h, p, "U0BILLINGLEAD");
  await finished(h, p);
  assert.equal((await approvalNow(h, p)).decided_by, "U0BILLINGLEAD");
  assert.equal((await refundsOf(h.db.db)).length, 1);
});

test("the requester may not approve their own request, even as a billing lead", async () => {
  const h = await start();
  h.slack.setUsergroup({
    id: "S0BILLINGLEADS",
    handle: "billing-leads",
    users: ["U0LEE", REQUESTER],
  });
  const p = await parked(h);

  await click(h, p, REQUESTER);
  const refusal = await ephemeralTo(h, REQUESTER);
  assert.match(String(refusal.args.text), /You asked for this/);
  await click(h, p, REQUESTER, APPROVAL_REJECT);
  const again = await ephemeralTo(h, REQUESTER, 2);
  assert.match(
    String(again.args.text),
    /You asked for this \(you started the task\), so you can't approve or reject it/,
  );
  assert.equal(h.slack.callsTo("views.open").length, 0, "no reason modal for the requester");
  assert.equal((await approvalNow(h, p)).status, "pending");
  const refused = await auditKinds(h.db.db, p.task.id, "approval_refused");
  assert.deepEqual(
    refused.map((e) => [e.actor_id, e.data.reason, e.data.decision]),
    [
      [REQUESTER, "own_request", "approved"],
      [REQUESTER, "own_request", "rejected"],
    ],
  );
  assert.equal((await refundsOf(h.db.db)).length, 0);
  assert.equal(h.slack.callsTo("chat.update").length, 0, "the card is unchanged");
});

test("approve and reject at the same moment make exactly one decision", async () => {
  const h = await start();
  const p = await parked(h);
  // The rejecter opened the reason modal first, as in Slack.
  await click(h, p, "U0BILLINGLEAD", APPROVAL_REJECT);
  await h.slack.waitForCall("views.open");

  await Promise.all([
    click(h, p, "U0LEE"),
    submitReason(h, p, "U0BILLINGLEAD", "Customer already got store credit"),
  ]);

  const decided = await decidedApproval(h, p);
  assert.ok(["approved", "rejected"].includes(decided.status), decided.status);
  const winner = decided.status === "approved" ? "U0LEE" : "U0BILLINGLEAD";
  assert.equal(decided.decided_by, winner);
  await finished(h, p);

  assert.equal((await refundsOf(h.db.db)).length, decided.status === "approved" ? 1 : 0);
  const calls = await toolCallsOf(h.db.db, p.task.id, "issue_refund");
  assert.deepEqual(
    calls.map((c) => c.status),
    [decided.status === "approved" ? "done" : "rejected"],
  );
  assert.equal((await auditKinds(h.db.db, p.task.id, "approval_decided")).length, 1);
  assert.equal(h.slack.callsTo("chat.update").length, 1, "the card shows one decision");

  // The loser hears who decided: an ephemeral under the card, or a DM after the modal.
  if (decided.status === "rejected") {
    const told = await ephemeralTo(h, "U0LEE");
    assert.match(String(told.args.text), /already rejected by <@U0BILLINGLEAD>/);
  } else {
    const dm = await h.until("the rejecter to get a DM", async () =>
      h.slack.callsTo("chat.postMessage").find((c) => c.args.channel === "U0BILLINGLEAD"),
    );
    assert.match(String(dm.args.text), /already approved by <@U0LEE>/);
  }
  const ignored = await auditKinds(h.db.db, p.task.id, "approval_click_ignored");
  assert.equal(ignored.length, 1, "the losing click is audited too");
});

test("a double click on Approve refunds once", async () => {
  const h = await start();
  const p = await parked(h);

  await Promise.all([click(h, p, "U0LEE"), click(h, p, "U0LEE")]);

  assert.equal((await decidedApproval(h, p)).status, "approved");
  await finished(h, p);
  const refunds = await refundsOf(h.db.db);
  assert.equal(refunds.length, 1);
  assert.deepEqual(
    (await toolCallsOf(h.db.db, p.task.id, "issue_refund")).map((c) => c.status),
    ["done"],
  );
  assert.equal((await auditKinds(h.db.db, p.task.id, "approval_decided")).length, 1);
  assert.equal((await auditKinds(h.db.db, p.task.id, "approval_click_ignored")).length, 1);
  // The second click is told of their own decision, not of "<@U0LEE>" as if of someone else's.
  const told = await ephemeralTo(h, "U0LEE");
  assert.match(
    String(told.args.text),
    /^You already approved this <!date\^\d+\^[^>]+>; a second click does not run it again\.$/,
  );
  assert.equal(ephemeralsTo(h, "U0LEE").length, 1);
  assert.equal(h.model.requestsFor("billing").length, 2, "billing carried on once");

  // Reject afterwards is told the same, before a modal asks for a reason.
  await click(h, p, "U0LEE", APPROVAL_REJECT);
  assert.match(String((await ephemeralTo(h, "U0LEE", 2)).args.text), /^You already approved this /);
  assert.equal(h.slack.callsTo("views.open").length, 0);
});

test("a rejection submitted twice by the same person: the second is told it was theirs", async () => {
  const h = await start();
  const p = await parked(h);
  await click(h, p, "U0LEE", APPROVAL_REJECT);
  await h.slack.waitForCall("views.open");

  await submitReason(h, p, "U0LEE", "Customer already got store credit");
  await decidedApproval(h, p);
  await submitReason(h, p, "U0LEE", "Customer already got store credit");

  const dm = await h.until("U0LEE to get a DM", async () =>
    h.slack.callsTo("chat.postMessage").find((c) => c.args.channel === "U0LEE"),
  );
  assert.match(
    String(dm.args.text),
    /^You already rejected this <!date\^\d+\^[^>]+>; it did not go ahead\.$/,
  );
  const decided = await approvalNow(h, p);
  assert.deepEqual([decided.status, decided.decided_by], ["rejected", "U0LEE"]);
  assert.equal(decided.reason, "Customer already got store credit");
  assert.equal((await auditKinds(h.db.db, p.task.id, "approval_click_ignored")).length, 1);
});

test("a DM that Slack stored but answered with a 500 is not sent again", async () => {
  const { lines, log } = warnings();
  const h = await start(undefined, { log });
  const p = await parked(h);
  await click(h, p, "U0LEE", APPROVAL_REJECT);
  await h.slack.waitForCall("views.open");
  await submitReason(h, p, "U0LEE", "Customer already got store credit");
  await decidedApproval(h, p);
  // The agent answers the rejection: its answer must be in Slack before the next post fails, or
  // the failure would be the answer's (an outbox row, sent again) rather than the DM's.
  await h.until("the answer to the rejection to be sent", async () => {
    const task = await h.db.db
      .selectFrom("tasks")
      .select("status")
      .where("id", "=", p.task.id)
      .executeTakeFirst();
    const rows = await h.db.db
      .selectFrom("slack_outbox")
      .select("status")
      .where("task_id", "=", p.task.id)
      .execute();
    return task?.status === "done" && rows.every((r) => r.status === "sent") ? true : undefined;
  });

  // The second submission is answered in a DM; Slack stores it, then its answer is a 500.
  h.slack.failNext("chat.postMessage", { error: "internal_error", status: 500, stored: true });
  await submitReason(h, p, "U0LEE", "Customer already got store credit");
  await h.until("the failed DM to be logged", async () =>
    lines.find((l) => l.msg === "could not tell the person who rejected"),
  );
  const dms = h.slack.callsTo("chat.postMessage").filter((c) => c.args.channel === "U0LEE");
  assert.equal(dms.length, 1, "asked once: a retry after Slack stored it would say it twice");
});

test("a click on a card whose approval is not in Baton's records: plain words, the id only in the log", async () => {
  const { lines, log } = warnings();
  const h = await start(undefined, { log });
  const p = await parked(h);
  const gone = { ...p, approval: { ...p.approval, id: randomUUID() } };

  await click(h, gone, "U0LEE");
  await click(h, gone, "U0BILLINGLEAD", APPROVAL_REJECT);

  const words =
    "Nothing was done: this approval request is no longer in Baton's records. Ask in the task's thread.";
  assert.equal((await ephemeralTo(h, "U0LEE")).args.text, words);
  assert.equal((await ephemeralTo(h, "U0BILLINGLEAD")).args.text, words);
  assert.equal(h.slack.callsTo("views.open").length, 0, "no reason modal for a missing request");
  const logged = lines.filter((l) => l.approvalId === gone.approval.id);
  assert.deepEqual(
    logged.map((l) => l.user),
    ["U0LEE", "U0BILLINGLEAD"],
  );
  assert.equal((await approvalNow(h, p)).status, "pending", "the real request is untouched");
});

test("a click on an expired request with nobody to fall back to runs nothing; the agent is told it expired", async () => {
  // With a fallback, the click would hand the request over instead (see deadlines.test.ts).
  const file = await loadAgentsFile(
    fileURLToPath(new URL("../../agents.yml", import.meta.url)),
    new Set(demoTools.map((t) => t.name)),
  );
  const approvals = file.policies.approvals.map(({ fallback: _, ...policy }) => policy);
  const h = await start(undefined, {
    agentsFile: { ...file, policies: { ...file.policies, approvals } },
  });
  const p = await parked(h);
  await h.db.db
    .updateTable("approvals")
    .set({ expires_at: new Date(Date.now() - 60_000), fallback: null })
    .where("id", "=", p.approval.id)
    .execute();

  await click(h, p, "U0LEE");
  const told = await ephemeralTo(h, "U0LEE");
  assert.match(String(told.args.text), /expired/);
  assert.equal((await decidedApproval(h, p)).status, "expired");

  await finished(h, p);
  assert.equal((await refundsOf(h.db.db)).length, 0);
  assert.deepEqual(
    (await toolCallsOf(h.db.db, p.task.id, "issue_refund")).map((c) => c.status),
    ["expired"],
  );
  const resumed = h.model.requestsFor("billing").at(-1);
  assert.ok(resumed);
  assert.match(lastToolMessage(resumed.body), /Nobody approved this call in time/);
  const update = await h.until("the card to show it expired", async () =>
    h.slack.callsTo("chat.update").at(0),
  );
  assert.match(blockTexts(update).join("\n"), /Expired/);
  assert.ok(!blocksOf(update).some((b) => b.type === "actions"));

  // A later click changes nothing more.
  await click(h, p, "U0BILLINGLEAD");
  assert.match(String((await ephemeralTo(h, "U0BILLINGLEAD")).args.text), /already expired/);
  assert.equal((await approvalNow(h, p)).status, "expired");
  assert.equal((await refundsOf(h.db.db)).length, 0);
});

test("a customer's 'ignore your instructions' leaves the allowlists and the gate intact", async () => {
  const h = await start(injectionScript());
  const { ts } = await h.mention(INJECTION);

  const approval = await waitForApprovalCard(h, "billing's refund to be parked");
  const task = await taskOfThread(h.db.db, ts);
  assert.ok(task);
  assert.equal(task.status, "waiting_human");

  // Customer Service may not refund at all: refused in code, audited, and nothing recorded as run.
  const refused = await auditKinds(h.db.db, task.id, "tool_refused");
  assert.deepEqual(
    refused.map((e) => [e.actor_id, e.data.tool, e.data.reason]),
    [["customer-service", "issue_refund", "not_allowed"]],
  );
  const csRetry = h.model.requestsFor("customer-service")[1];
  assert.ok(csRetry);
  assert.match(lastToolMessage(csRetry.body), /not allowed to use issue_refund/);

  // Billing may, but 5000 USD over the threshold waits for a billing lead whatever the text says.
  assert.deepEqual(
    [approval.status, approval.agent_id, approval.policy_id],
    ["pending", "billing", "large-refunds"],
  );
  assert.equal((approval.args as { amount_usd: number }).amount_usd, 5000);
  const calls = await toolCallsOf(h.db.db, task.id, "issue_refund");
  assert.deepEqual(
    calls.map((c) => `${c.agent_id}:${c.status}`),
    ["billing:pending_approval"],
  );
  assert.equal((await refundsOf(h.db.db)).length, 0);
  assert.equal((await auditKinds(h.db.db, task.id, "approval_decided")).length, 0);
});

test("a decision taken while the workers are down is carried out when they return", async () => {
  const h = await start();
  const p = await parked(h);

  await h.restart({ workers: false });
  const res = await click(h, p, "U0LEE");
  assert.equal(res.status, 200);
  const stored = await decidedApproval(h, p);
  assert.deepEqual([stored.status, stored.decided_by], ["approved", "U0LEE"]);
  await h.until("the card to show the decision, with no worker", async () =>
    h.slack.callsTo("chat.update").at(0),
  );
  assert.equal((await refundsOf(h.db.db)).length, 0, "no worker, so nothing ran yet");

  await h.restart({ workers: true });
  await finished(h, p);
  assert.equal((await refundsOf(h.db.db)).length, 1);
  assert.deepEqual(
    (await toolCallsOf(h.db.db, p.task.id, "issue_refund")).map((c) => c.status),
    ["done"],
  );
  const answer = h.slack
    .callsTo("chat.postMessage")
    .filter((c) => c.args.channel === CHANNEL && c.args.thread_ts === p.ts)
    .at(-1);
  assert.match(String(answer?.args.text), /Refunded 149 USD/);
});

test("hostile text in a tool's arguments renders escaped and within Slack's limits", async () => {
  const agentsFile = withCustomerNotes(
    await loadAgentsFile(
      fileURLToPath(new URL("../../agents.yml", import.meta.url)),
      new Set(demoTools.map((t) => t.name)),
    ),
  );
  const h = await start(hostileNoteScript(), {
    agentsFile,
    tools: [...demoTools, sendCustomerNote],
  });
  const p = await parked(h, "billing: tell the customer of order 1077 their refund is ready");
  assert.equal(p.approval.tool, "send_customer_note");
  assert.equal((p.approval.args as { body: string }).body, HOSTILE_BODY, "stored as sent");

  await click(h, p, "U0LEE", APPROVAL_REJECT);
  await submitReason(h, p, "U0LEE", "<!channel> phishing: see <https://evil.example|bank.com>");
  await finished(h, p);

  const cards = [
    ...h.slack.callsTo("chat.postMessage").filter((c) => c.args.thread_ts === p.ts),
    ...h.slack.callsTo("chat.update"),
  ];
  const card = cards.find((c) => blockTexts(c).some((t) => t.includes("send_customer_note")));
  assert.ok(card, "the card was posted");
  assert.ok(!card.failed);
  assert.ok(
    blockTexts(card).some((t) => t.includes("&lt;!channel&gt;")),
    "the text is shown, escaped",
  );
  assert.equal(h.slack.callsTo("chat.update").length, 1);
  for (const message of cards) {
    assert.ok(!message.failed, `Slack accepted ${message.method}`);
    const blocks = blocksOf(message);
    assert.ok(blocks.length <= 50);
    const everything = [String(message.args.text ?? ""), ...blockTexts(message)];
    for (const t of everything) {
      assert.ok(!/<!(channel|here|everyone)/.test(t), `no broadcast in ${t.slice(0, 80)}`);
      assert.ok(!t.includes("<https://evil"), `no disguised link in ${t.slice(0, 80)}`);
    }
    for (const block of blocks) {
      if (block.text?.text !== undefined) assert.ok(block.text.text.length <= 3000);
      for (const f of block.fields ?? []) assert.ok((f.text ?? "").length <= 2000);
    }
    assert.ok(String(message.args.text ?? "").length <= 40_000);
  }
});
