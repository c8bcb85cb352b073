import assert from "node:assert/strict";
import { test } from "node:test";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import {
  agentsFileWith,
  type Harness,
  harnessPerTest,
  REQUESTER,
  SIGNING_SECRET,
  SUPPORT_LANE,
} from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { outboxWaits, waitForApprovalCard, waitForEscalationCard } from "../support/observe.ts";
import {
  directRefundScript,
  ESCALATION_NOTE,
  refundsOf,
  sendBackSubmission,
  taskOfThread,
} from "../support/scripts-humans.ts";
import type { SlackCall } from "../support/slack-emulator.ts";
import { appMentionEvent, deliverEvent, messageEvent } from "../support/slack-signing.ts";
import { runBaton } from "../support/slash-command.ts";

// A task asked in a direct message lives where only its requester and Baton can see it. Its
// approval and escalation cards were posted there: no approver could click them, and an
// escalation owner was sent a link to a conversation they could not open. They now go to the
// lane's channel, else policies.decisions_channel, else the digest channel (agents.yml: C0OPS).

const DM = "D0DMREQUESTER";
const DECISIONS = "C0OPS";

const startHarness = harnessPerTest();

async function dm(h: Harness, text: string, threadTs?: string) {
  const { ts } = h.slack.addMessage({
    channel: DM,
    user: REQUESTER,
    text,
    ...(threadTs && { threadTs }),
  });
  const event = messageEvent({
    user: REQUESTER,
    channel: DM,
    text,
    ts,
    ...(threadTs && { threadTs }),
  });
  await deliverEvent(
    h.endpoint,
    SIGNING_SECRET,
    { ...event, channel_type: "im" },
    { eventId: `EvDM${ts}` },
  );
  return ts;
}

/** A DM's task escalated to the operations lane (agents.yml: U0OPSMANAGER), its card posted. */
async function escalatedByDm() {
  const note = { ...ESCALATION_NOTE, lane: "operations" };
  const h = await startHarness({
    script: scriptByAgent({
      "customer-service": [{ toolCalls: [{ name: "escalate_to_human", arguments: note }] }],
      billing: [{ content: "I have refunded 149 USD for order 1077." }],
    }),
  });
  const ts = await dm(h, "the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(h);
  await allSent(h, ts);
  return { h, ts, escalation };
}

/**
 * Until the task's notices so far are in Slack: a page waiting to be sent brings its person to the
 * card, so a reply then pages nobody again (see direct-replies.ts), and the tests read each page.
 */
async function allSent(h: Harness, ts: string) {
  const task = await taskOfThread(h.db.db, ts);
  assert.ok(task);
  await h.until(
    "the task's posts to be in Slack",
    async () =>
      (await outboxWaits(h.db.db, task.id)).every((row) => row.status === "sent") || undefined,
  );
}

/** The same, its card taken over by the manager: the task is theirs. */
async function takenOverByTheManager() {
  const { h, ts, escalation } = await escalatedByDm();
  await h.clickCard("U0OPSMANAGER", ESCALATION_TAKE_OVER, escalation, escalation.card_ts ?? "");
  await h.until(
    "the manager holds it",
    async () => (await taskOfThread(h.db.db, ts))?.owner_id === "U0OPSMANAGER" || undefined,
  );
  await allSent(h, ts);
  return { h, ts, escalation };
}

const withAction = (calls: SlackCall[], actionId: string) =>
  calls.filter((c) => JSON.stringify(c.args.blocks ?? []).includes(`"${actionId}"`));
const textsIn = (h: Harness, channel: string, ts: string) =>
  h.slack
    .callsTo("chat.postMessage")
    .filter((c) => !c.failed && c.args.channel === channel && c.args.thread_ts === ts)
    .map((c) => String(c.args.text));

test("a refund over the limit asked by DM: its card goes where the billing leads are", async () => {
  const h = await startHarness({ script: scriptByAgent(directRefundScript()) });
  const ts = await dm(h, "billing: please refund order 1077, the lamp came back");
  const approval = await waitForApprovalCard(h);
  assert.equal(approval.card_channel, DECISIONS);
  const [card] = withAction(h.slack.callsTo("chat.postMessage"), APPROVAL_APPROVE);
  assert.equal(card?.args.channel, DECISIONS);
  assert.equal(card?.args.thread_ts, undefined, "a message of its own in the channel");
  const told = await h.until("the requester told in the DM", async () =>
    textsIn(h, DM, ts).find((t) => /needs a person's approval/.test(t)),
  );
  // The requester reads what is to be done in words; the approvers' card names the tool exactly.
  assert.match(told, /Billing needs a person's approval to issue a refund first/);
  assert.doesNotMatch(told, /issue_refund/);
  assert.match(JSON.stringify(card?.args.blocks), /issue_refund/);

  await h.clickCard("U0BILLINGLEAD", APPROVAL_APPROVE, approval, approval.card_ts ?? "");
  await h.until("the refund", async () => (await refundsOf(h.db.db)).length === 1 || undefined);
  await h.until("the requester's answer in the DM", async () =>
    textsIn(h, DM, ts).find((t) => /Refunded 149 USD/.test(t)),
  );
  const update = await h.until("the card updated where it is", async () =>
    h.slack
      .callsTo("chat.update")
      .find(
        (c) =>
          !c.failed && c.args.ts === approval.card_ts && /Approved/.test(JSON.stringify(c.args)),
      ),
  );
  assert.equal(update.args.channel, DECISIONS);
});

test("App Home links an approver to the card of a DM's task, not to the DM", async () => {
  const h = await startHarness({ script: scriptByAgent(directRefundScript()) });
  await dm(h, "billing: please refund order 1077, the lamp came back");
  const approval = await waitForApprovalCard(h);
  const opened = { type: "app_home_opened", user: "U0BILLINGLEAD", tab: "home" };
  await deliverEvent(h.endpoint, SIGNING_SECRET, opened as never);
  const view = await h.until("the home view", async () =>
    h.slack.callsTo("views.publish").find((c) => c.args.user_id === "U0BILLINGLEAD"),
  );
  const json = JSON.stringify(view.args.view);
  assert.ok(!json.includes(DM), "no link to the requester's DM");
  assert.ok(json.includes(`${DECISIONS}/p${String(approval.card_ts).replace(".", "")}`));
});

test("an escalation asked by DM: its card goes where its owner can take it over", async () => {
  const { h, ts, escalation } = await escalatedByDm();
  assert.equal(escalation.card_channel, DECISIONS);
  await h.until("the requester told in the DM", async () =>
    textsIn(h, DM, ts).find((t) => /needs a person/.test(t)),
  );
  const notice = await h.until("the owner's notice", async () =>
    h.slack
      .callsTo("chat.postMessage")
      .find((c) => /needs a person on this/.test(String(c.args.text))),
  );
  assert.ok(!String(notice.args.text).includes(DM), "no link to a DM they cannot open");
  assert.match(String(notice.args.text), new RegExp(`its card is in \\S*${DECISIONS}`));

  await h.clickCard("U0OPSMANAGER", ESCALATION_TAKE_OVER, escalation, escalation.card_ts ?? "");
  const task = await h.until("the manager to hold the task", async () => {
    const t = await taskOfThread(h.db.db, ts);
    return t?.owner_id === "U0OPSMANAGER" ? t : undefined;
  });
  assert.equal(task.status, "waiting_human");
  const update = await h.until("the card updated where it is", async () =>
    h.slack.callsTo("chat.update").find((c) => !c.failed && c.args.ts === escalation.card_ts),
  );
  assert.equal(update.args.channel, DECISIONS);
  await h.until("the requester told who took it", async () =>
    textsIn(h, DM, ts).find((t) => /took this over/.test(t)),
  );

  // As the card says: the holder names an agent in a reply in the card's thread.
  const reply = "refund 149 USD for order 1077, the lamp was unsafe";
  await deliverEvent(
    h.endpoint,
    SIGNING_SECRET,
    appMentionEvent({
      user: "U0OPSMANAGER",
      channel: DECISIONS,
      text: `<@U0BATONBOT> billing: ${reply}`,
      threadTs: escalation.card_ts ?? "",
    }),
  );
  const handed = await h.until("billing to hold the same task", async () => {
    const t = await taskOfThread(h.db.db, ts);
    return t?.owner_id === "billing" ? t : undefined;
  });
  assert.equal(handed.id, task.id);
  const tasks = await h.db.db.selectFrom("tasks").select("id").execute();
  assert.equal(tasks.length, 1, "no new task from the card's thread");
  await h.until("the requester told who has it now", async () =>
    textsIn(h, DM, ts).find((t) => t === "Billing is on it now."),
  );
});

// A DM's task, escalated to the operations lane (U0OPSMANAGER), taken over from the card in #ops and
// closed with /baton done. The requester replies in the DM: the task is reopened for the manager,
// and the notice paging them went into the requester's DM, which the manager cannot see.
test("a DM task reopened by the requester's reply: the holder is paged where they can see it", async () => {
  const { h, ts } = await takenOverByTheManager();
  const task = await taskOfThread(h.db.db, ts);
  const closed = await runBaton(h, `done ${task?.id}`, {
    user: "U0OPSMANAGER",
    channel: DECISIONS,
  });
  assert.match(closed.text, /is closed/);
  await dm(h, "it happened again, the replacement is smoking too", ts);
  const notice = await h.until("the reopen notice", async () =>
    h.slack.callsTo("chat.postMessage").find((c) => /open again/.test(String(c.args.text))),
  );
  const said = `${String(notice.args.channel)}: ${String(notice.args.text)}`;
  assert.notEqual(
    notice.args.channel,
    DM,
    `the manager is paged in the requester's DM, which they cannot see: ${said}`,
  );
  // Nor can they read the reply there: the page quotes it.
  assert.match(String(notice.args.text), /the replacement is smoking too/);
});

// A DM's task held by the manager (or waiting on its approvers) lives on a card in #ops. The
// requester's replies in the DM were kept for an agent that might never come, and nobody who could
// act on them could read them: "please call me" went nowhere.
test("a DM task a person holds: the requester's reply is passed on to the card's thread", async () => {
  const { h, ts, escalation } = await takenOverByTheManager();
  await dm(h, "please call me at 555-0100, the smoke got worse", ts);
  const passed = await h.until("the reply passed on", async () =>
    h.slack
      .callsTo("chat.postMessage")
      .find((c) => !c.failed && /555-0100/.test(String(c.args.text))),
  );
  assert.deepEqual([passed.args.channel, passed.args.thread_ts], [DECISIONS, escalation.card_ts]);
  assert.match(
    String(passed.args.text),
    /^<@U0OPSMANAGER> The requester replied in their direct message with Baton: "please call me/,
  );
  const task = await taskOfThread(h.db.db, ts);
  assert.deepEqual([task?.status, task?.owner_id], ["waiting_human", "U0OPSMANAGER"]);
  assert.equal(h.model.requests.length, 1, "no agent ran on the reply");
});

test("a DM task escalated to a named person: the requester's reply passed on pages them", async () => {
  const { h, ts, escalation } = await escalatedByDm();
  await dm(h, "please call me at 555-0100, the smoke got worse", ts);
  const passed = await h.until("the reply passed on", async () =>
    h.slack
      .callsTo("chat.postMessage")
      .find((c) => !c.failed && /555-0100/.test(String(c.args.text))),
  );
  assert.deepEqual([passed.args.channel, passed.args.thread_ts], [DECISIONS, escalation.card_ts]);
  assert.match(String(passed.args.text), /^<@U0OPSMANAGER> The requester replied/);
});

/** A DM's task escalated to the support lane (agents.yml: #support's), given to `lane` if set. */
async function escalatedToSupportByDm(lane?: string) {
  const h = await startHarness({
    script: scriptByAgent({
      "customer-service": [
        { toolCalls: [{ name: "escalate_to_human", arguments: ESCALATION_NOTE }] },
      ],
    }),
    ...(lane !== undefined && { agentsFile: agentsFileWith([SUPPORT_LANE, lane]) }),
  });
  const ts = await dm(h, "the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(h);
  await allSent(h, ts);
  return { h, ts, escalation };
}

const passedOnIn = (h: Harness, channel: string, ts: string) =>
  h.until("the reply passed on", async () =>
    h.slack
      .callsTo("chat.postMessage")
      .find((c) => !c.failed && c.args.channel === channel && c.args.thread_ts === ts),
  );

test("a DM task escalated to a lane's group: the requester's reply passed on pages the group", async () => {
  const { h, ts, escalation } = await escalatedToSupportByDm(
    "    support:\n      groups: [S0BILLINGLEADS]\n      channel: C0SUPPORT\n",
  );
  await dm(h, "please call me at 555-0100, the smoke got worse", ts);
  const passed = await passedOnIn(h, "C0SUPPORT", escalation.card_ts ?? "");
  assert.match(
    String(passed.args.text),
    /^<!subteam\^S0BILLINGLEADS> The requester replied in their direct message with Baton: "please call/,
  );
});

test("a DM task escalated to a lane's channel: the requester's reply passed on is sent to the channel too", async () => {
  const { h, ts, escalation } = await escalatedToSupportByDm();
  assert.deepEqual(escalation.owner, { kind: "channel", id: "C0SUPPORT" });
  await dm(h, "please call me at 555-0100, the smoke got worse", ts);
  const passed = await passedOnIn(h, "C0SUPPORT", escalation.card_ts ?? "");
  assert.match(
    String(passed.args.text),
    /^The requester replied in their direct message with Baton:/,
  );
  assert.equal(
    String(passed.args.reply_broadcast),
    "true",
    "the channel sees it, not only the thread",
  );
});

test("a DM's refund waiting on its approvers: the requester's reply reaches the card's thread", async () => {
  const h = await startHarness({ script: scriptByAgent(directRefundScript()) });
  const ts = await dm(h, "billing: please refund order 1077, the lamp came back");
  const approval = await waitForApprovalCard(h);
  await dm(h, "actually, cancel the refund: I will keep the lamp", ts);
  const passed = await h.until("the reply passed on", async () =>
    h.slack
      .callsTo("chat.postMessage")
      .find((c) => !c.failed && /cancel the refund/.test(String(c.args.text))),
  );
  assert.deepEqual([passed.args.channel, passed.args.thread_ts], [DECISIONS, approval.card_ts]);
  assert.equal(
    (await h.db.db.selectFrom("approvals").select("status").executeTakeFirstOrThrow()).status,
    "pending",
  );
});

// Customer Service escalates a DM's task; the manager sends it to Billing from the card. The
// requester read "Billing is on it again." though Billing never had it: now "on it now".
test("the requester is not told an agent is on it 'again' when it never was", async () => {
  const { h, ts, escalation } = await escalatedByDm();
  await h.click(
    sendBackSubmission({
      userId: "U0OPSMANAGER",
      escalationId: escalation.id,
      agent: { id: "billing", name: "Billing" },
      instruction: "refund 149 USD for order 1077",
    }),
  );
  const told = await h.until("the requester told", async () =>
    h.slack
      .callsTo("chat.postMessage")
      .find(
        (c) =>
          c.args.channel === DM && c.args.thread_ts === ts && /is on it/.test(String(c.args.text)),
      ),
  );
  assert.doesNotMatch(String(told.args.text), /again/, "Billing never had this task");
});

// The manager holding a DM's task found it in App Home's "my tasks" linked to the requester's DM,
// which they cannot open; the requester, who can, keeps the DM.
test("App Home links a DM task's holder to its card, and its requester to the DM", async () => {
  const { h, ts, escalation } = await takenOverByTheManager();
  const homeOf = async (user: string) => {
    const opened = { type: "app_home_opened", user, tab: "home" };
    await deliverEvent(h.endpoint, SIGNING_SECRET, opened as never);
    const view = await h.until(`${user}'s home`, async () =>
      h.slack.callsTo("views.publish").find((c) => c.args.user_id === user),
    );
    return JSON.stringify(view.args.view);
  };
  const held = await homeOf("U0OPSMANAGER");
  assert.ok(!held.includes(DM), `no link to the requester's DM: ${held}`);
  assert.ok(held.includes(`${DECISIONS}/p${String(escalation.card_ts).replace(".", "")}`));
  const asked = await homeOf(REQUESTER);
  assert.ok(asked.includes(`${DM}/p${ts.replace(".", "")}`), "the requester opens the DM");
});

// The card tells the manager to close the task with /baton done and a link to the card: the link
// they can copy (the task's own thread is the requester's DM) must find the task.
test("/baton done with a link to a DM task's card closes that task", async () => {
  const { h, ts, escalation } = await takenOverByTheManager();
  const card = await h.until("the card, taken over", async () =>
    h.slack.callsTo("chat.update").find((c) => c.args.ts === escalation.card_ts && !c.failed),
  );
  assert.match(JSON.stringify(card.args.blocks), /baton done` and a link to this card/);
  const link = `https://acme.slack.com/archives/${DECISIONS}/p${String(escalation.card_ts).replace(".", "")}`;
  const closed = await runBaton(h, `done ${link}`, { user: "U0OPSMANAGER", channel: DECISIONS });
  assert.match(closed.text, /is closed/);
  assert.equal((await taskOfThread(h.db.db, ts))?.status, "done");
});
