import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { sql } from "kysely";
import type { ChatSurface } from "../../src/core/ports.ts";
import { ownershipHistory } from "../../src/db/ledger.repository.ts";
import { enforceDeadlines } from "../../src/runtime/deadlines.ts";
import { runMaintenance } from "../../src/runtime/maintenance.ts";
import { APPROVAL_APPROVE, APPROVAL_REJECT } from "../../src/slack/views/approval-card.ts";
import { CHANNEL, type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForApprovalCard, waitForEscalationCard } from "../support/observe.ts";
import {
  escalationScript,
  finishedTask,
  missApprovalDeadline,
  missEscalationDeadline,
  orderReturnScript,
  refundsOf,
} from "../support/scripts-humans.ts";

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const FALLBACK = { users: ["U0OPSMANAGER"], groups: [] };

/** Dana's return reaches billing, whose refund waits on a card for the billing leads. */
async function parkedRefund(harness: Harness) {
  const { ts } = await harness.mention("I'd like to return order 1077, please refund me");
  const parked = await waitForApprovalCard(harness, "the refund to wait");
  return { ts, parked };
}

function approvalNow(harness: Harness, approvalId: string) {
  return harness.db.db
    .selectFrom("approvals")
    .selectAll()
    .where("id", "=", approvalId)
    .executeTakeFirstOrThrow();
}

function remindersIn(harness: Harness, ts: string) {
  return harness.slack
    .callsTo("chat.postMessage")
    .filter((c) => c.args.thread_ts === ts && String(c.args.text).includes("in time"));
}

const ephemeralsTo = (harness: Harness, user: string) =>
  harness.slack.callsTo("chat.postEphemeral").filter((c) => c.args.user === user);

/** What a first approver is told of a click after the approval went to the fallback. */
const MOVED_ON =
  "This request passed its deadline and went to <@U0OPSMANAGER>, who decides now. Nothing was done.";

test("an approval past its deadline goes to its fallback with a reminder; the fallback's approval runs it once", async () => {
  h = await startHarness({ script: scriptByAgent(orderReturnScript()) });
  const harness = h;
  const { ts, parked } = await parkedRefund(harness);
  await missApprovalDeadline(harness.db.db, parked.id);

  await runMaintenance(harness.baton.deps);
  await runMaintenance(harness.baton.deps); // a second replica's pass changes nothing

  const moved = await approvalNow(harness, parked.id);
  assert.equal(moved.status, "pending");
  assert.deepEqual(moved.approvers, FALLBACK);
  assert.ok(moved.expires_at.getTime() > Date.now(), "the fallback gets a new deadline");
  assert.notEqual(moved.card_ts, parked.card_ts, "the fallback gets a fresh card to click");
  const history = await ownershipHistory(harness.db.db, parked.task_id);
  assert.equal(history.filter((x) => x.kind === "approval_escalated").length, 1);
  const reminders = remindersIn(harness, ts);
  assert.equal(reminders.length, 1);
  assert.match(
    String(reminders[0]?.args.text),
    /^<@U0OPSMANAGER> ⏰/,
    "the fallback is pinged: a live mention, not escaped text",
  );

  // The original approvers no longer decide; the fallback does. A billing lead clicking the old
  // card is told it moved on, not that they were never allowed.
  await harness.clickCard("U0LEE", APPROVAL_APPROVE, parked, ts);
  const told = await harness.until(
    "U0LEE to be told",
    async () => ephemeralsTo(harness, "U0LEE")[0],
  );
  assert.equal(told.args.text, MOVED_ON);
  // Reject says so too, before a modal asks for a reason nobody would use.
  await harness.clickCard("U0BILLINGLEAD", APPROVAL_REJECT, parked, ts);
  const toldLead = await harness.until(
    "U0BILLINGLEAD to be told",
    async () => ephemeralsTo(harness, "U0BILLINGLEAD")[0],
  );
  assert.equal(toldLead.args.text, MOVED_ON);
  assert.equal(harness.slack.callsTo("views.open").length, 0);
  // Someone who never could decide is told who may, not that it moved on from them.
  await harness.clickCard("U0BYSTANDER", APPROVAL_APPROVE, moved, ts);
  const toldBystander = await harness.until(
    "U0BYSTANDER to be told",
    async () => ephemeralsTo(harness, "U0BYSTANDER")[0],
  );
  assert.match(String(toldBystander.args.text), /^Only <@U0OPSMANAGER> may decide on /);
  assert.equal((await refundsOf(harness.db.db)).length, 0);
  await harness.clickCard("U0OPSMANAGER", APPROVAL_APPROVE, moved, ts);
  await harness.until("the task to finish", () => finishedTask(harness.db.db, ts));
  assert.equal((await refundsOf(harness.db.db)).length, 1);
});

test("a click past the deadline, before the sweep, sends the approval to its fallback as the sweep would", async () => {
  h = await startHarness({ script: scriptByAgent(orderReturnScript()) });
  const harness = h;
  const { ts, parked } = await parkedRefund(harness);
  await missApprovalDeadline(harness.db.db, parked.id);

  await harness.clickCard("U0LEE", APPROVAL_APPROVE, parked, ts);
  const told = await harness.until(
    "U0LEE to be told",
    async () => ephemeralsTo(harness, "U0LEE")[0],
  );
  assert.equal(told.args.text, MOVED_ON);
  await runMaintenance(harness.baton.deps); // the sweep, coming by later, changes nothing

  const moved = await approvalNow(harness, parked.id);
  assert.equal(moved.status, "pending");
  assert.deepEqual(moved.approvers, FALLBACK);
  const history = await ownershipHistory(harness.db.db, parked.task_id);
  assert.equal(history.filter((x) => x.kind === "approval_escalated").length, 1);
  assert.equal(remindersIn(harness, ts).length, 1);
  await harness.clickCard("U0OPSMANAGER", APPROVAL_APPROVE, moved, ts);
  await harness.until("the task to finish", () => finishedTask(harness.db.db, ts));
  assert.equal((await refundsOf(harness.db.db)).length, 1);
});

test("an approver's click still asking Slack about groups when the approval goes to its fallback decides nothing", async () => {
  h = await startHarness({ script: scriptByAgent(orderReturnScript()) });
  const harness = h;
  const { ts, parked } = await parkedRefund(harness);
  const groupsAsked = harness.slack.holdAnswer("usergroups.users.list");
  // Baton answers the click's request once it has handled it.
  const clicked = harness.clickCard("U0LEE", APPROVAL_APPROVE, parked, ts);
  await groupsAsked.arrived; // U0LEE is checked against the billing leads, who still decide
  await missApprovalDeadline(harness.db.db, parked.id);
  await enforceDeadlines(harness.baton.deps);
  groupsAsked.release();
  await clicked;

  const answered = await harness.until("the click to be answered", async () => {
    const row = await approvalNow(harness, parked.id);
    return (row.status !== "pending" || ephemeralsTo(harness, "U0LEE").length > 0) && row;
  });
  assert.equal(answered.status, "pending", "U0LEE's approval came after the handover");
  assert.deepEqual(answered.approvers, FALLBACK);
  assert.equal(ephemeralsTo(harness, "U0LEE")[0]?.args.text, MOVED_ON);
  assert.equal((await refundsOf(harness.db.db)).length, 0);
});

test("a sweep that listed an approval before another replica escalated it leaves it with the fallback", async () => {
  h = await startHarness({ script: scriptByAgent(orderReturnScript()) });
  const harness = h;
  const { parked } = await parkedRefund(harness);
  await missApprovalDeadline(harness.db.db, parked.id);
  // A second approval due a second later (another task's, in production; here a copy).
  const copied = await sql<{ id: string }>`
    insert into approvals (task_id, step_no, tool_call_id, model_call_id, agent_id, tool, args,
      policy_id, requester_id, approvers, fallback, expires_at, card_channel, card_ts)
    select task_id, step_no, tool_call_id || ':copy', model_call_id, agent_id, tool, args,
      policy_id, requester_id, approvers, fallback, expires_at + interval '1 second', card_channel,
      card_ts
    from approvals where id = ${parked.id} returning id`.execute(harness.db.db);
  const second = copied.rows[0]?.id ?? "";
  const deps = harness.baton.deps;
  // Replica B lists both, escalates the first, then waits on Slack while replica A sweeps.
  let release = () => {};
  const slackAnswers = new Promise<void>((resolve) => {
    release = resolve;
  });
  const slowChat: ChatSurface = {
    ...deps.chat,
    deliver: async (...args) => {
      await slackAnswers;
      return deps.chat.deliver(...args);
    },
  };
  const replicaB = enforceDeadlines({ ...deps, chat: slowChat });
  await harness.until("B to escalate the first", async () => {
    return (await approvalNow(harness, parked.id)).escalated_at;
  });
  await enforceDeadlines(deps);
  const escalated = await approvalNow(harness, second);
  assert.ok(escalated.escalated_at, "replica A escalates the second");
  release();
  await replicaB;

  const after = await approvalNow(harness, second);
  assert.equal(after.status, "pending", "its new deadline has not passed");
  assert.deepEqual(after.approvers, FALLBACK);
});

// agents.yml: support is #support's (C0SUPPORT). Its members decide there, not in the requester's
// thread, where the reminder used to go with no mention.
test("an escalation to a channel's lane nobody picked up in time: the channel is paged, once", async () => {
  h = await startHarness({ script: scriptByAgent(escalationScript()) });
  const harness = h;
  const { ts } = await harness.mention("I was charged twice and I'm furious");
  const escalation = await waitForEscalationCard(harness, "the escalation");
  await missEscalationDeadline(harness.db.db, escalation.id);
  await runMaintenance(harness.baton.deps);
  await runMaintenance(harness.baton.deps);
  const remindersOf = () =>
    harness.slack
      .callsTo("chat.postMessage")
      .filter((c) => !c.failed && String(c.args.text).includes("Reminder"));
  // Posted once the run still finishing its own posts lets the task go.
  await harness.until("the reminder", async () => remindersOf().length > 0 || undefined);
  await runMaintenance(harness.baton.deps);
  const reminders = remindersOf();
  assert.equal(reminders.length, 1);
  const said = `${String(reminders[0]?.args.channel)}: ${String(reminders[0]?.args.text)}`;
  assert.equal(reminders[0]?.args.channel, "C0SUPPORT", `not where the lane decides: ${said}`);
  assert.equal(reminders[0]?.args.thread_ts, undefined, "the card is not in #support's threads");
  assert.match(said, /^C0SUPPORT: <!here> ⏰/, "a live mention leads");
  assert.match(said, new RegExp(`${CHANNEL}.*${ts.replace(".", "")}`), "it links to the card");
  const audit = await harness.db.db
    .selectFrom("audit_events")
    .select("kind")
    .where("task_id", "=", escalation.task_id)
    .where("kind", "=", "escalation_reminded")
    .execute();
  assert.equal(audit.length, 1);
});
