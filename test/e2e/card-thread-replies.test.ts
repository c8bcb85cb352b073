import assert from "node:assert/strict";
import { test } from "node:test";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import {
  agentsFileWith,
  CHANNEL,
  type Harness,
  harnessPerTest,
  REQUESTER,
  SIGNING_SECRET,
  SUPPORT_LANE,
} from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { postsInThread, waitForApprovalCard, waitForEscalationCard } from "../support/observe.ts";
import {
  directRefundScript,
  ESCALATION_NOTE,
  escalationScript,
  refundsOf,
  taskOfThread,
} from "../support/scripts-humans.ts";
import type { SlackCall } from "../support/slack-emulator.ts";
import { appMentionEvent, deliverEvent, messageEvent } from "../support/slack-signing.ts";

// Replies in the thread of a card people work from reach the task and the people holding it.
//
// A person who only clicked "Take it over" on a card in a channel thread does not follow that
// thread: Slack tells them of nothing written there unless they are mentioned. A requester's
// "any update?" under the card they took went unheard while they held the task.

const startHarness = harnessPerTest();

const SUPPORT_LEAD = "U0SUPPORTLEAD";
const DM = "D0DMREQUESTER";
const REFUND = "billing: please refund order 1077, the lamp came back";

/** Customer Service escalates in a channel thread; the support lead takes the card over. */
async function takenOver() {
  const h = await startHarness({ script: scriptByAgent(escalationScript()) });
  const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(h);
  await h.clickCard(SUPPORT_LEAD, ESCALATION_TAKE_OVER, escalation, ts);
  const task = await h.until("the lead holds the task", async () => {
    const t = await taskOfThread(h.db.db, ts);
    return t?.owner_id === SUPPORT_LEAD ? t : undefined;
  });
  return { h, ts, task };
}

/** Every post the task's replies led to is in Slack: its outbox has nothing left to send. */
function allSent(h: Harness, taskId: string) {
  return h.until("the task's posts to be sent", async () => {
    const rows = await h.db.db
      .selectFrom("slack_outbox")
      .select("status")
      .where("task_id", "=", taskId)
      .execute();
    return rows.every((r) => r.status === "sent") || undefined;
  });
}

const pagesOf = (h: Harness, ts: string) =>
  postsInThread(h.slack, ts).filter((c) => String(c.args.text).startsWith(`<@${SUPPORT_LEAD}>`));

test("a reply to a task a person took over pages them in its thread, not for their own", async () => {
  const { h, ts, task } = await takenOver();
  await h.reply(ts, "any update? the smell is still in the room", { user: SUPPORT_LEAD });
  await allSent(h, task.id);
  assert.equal(pagesOf(h, ts).length, 0, "not paged for their own reply");

  await h.reply(ts, "<@U0BATONBOT> any update?");
  const [page] = await h.until("the holder paged", async () => {
    const pages = pagesOf(h, ts);
    return pages.length > 0 ? pages : undefined;
  });
  assert.equal(page?.args.channel, CHANNEL);
  assert.match(String(page?.args.text), /new reply/);
  const after = await taskOfThread(h.db.db, ts);
  assert.deepEqual([after?.status, after?.owner_id], ["waiting_human", SUPPORT_LEAD]);
  assert.equal(h.model.requestsFor("customer-service").length, 2, "no agent ran on the reply");
});

test("replies while the holder's page is still on its way page them once", async () => {
  const { h, ts, task } = await takenOver();
  // Slack takes the page, and Baton does not hear so until the second reply is in.
  await repliesWhileThePageWaits({ h, ts, taskId: task.id }, (c) =>
    String(c.args.text).startsWith(`<@${SUPPORT_LEAD}>`),
  );
  assert.equal(pagesOf(h, ts).length, 1);
});

// A task asked in a direct message has its approval card in a channel (agents.yml: #ops). A lead's
// "@Baton why 149?" under that card started a new task, which Customer Service answered with no
// idea of the refund; the thread of an escalation card was already its task's.
test("a mention in the thread of a DM task's approval card is a reply to that task", async () => {
  const script = directRefundScript();
  script["customer-service"] = [{ content: "Hi, I'm Customer Service: what is this about?" }];
  const h = await startHarness({ script: scriptByAgent(script) });
  const asked = h.slack.addMessage({ channel: DM, user: REQUESTER, text: REFUND });
  const event = messageEvent({ user: REQUESTER, channel: DM, text: REFUND, ts: asked.ts });
  await deliverEvent(h.endpoint, SIGNING_SECRET, event);
  const approval = await waitForApprovalCard(h);
  const question = { user: "U0LEE", channel: "C0OPS", threadTs: approval.card_ts ?? "" };
  const text = "<@U0BATONBOT> why 149, was the item checked?";
  const { ts } = h.slack.addMessage({ ...question, text });
  await deliverEvent(h.endpoint, SIGNING_SECRET, appMentionEvent({ ...question, text, ts }));

  const tasks = await h.db.db.selectFrom("tasks").select("id").execute();
  assert.equal(tasks.length, 1, "no new task from the card's thread");
  const inputs = await h.db.db.selectFrom("task_inputs").select(["task_id", "author_id"]).execute();
  assert.deepEqual(inputs, [{ task_id: approval.task_id, author_id: "U0LEE" }]);
  const told = await h.until("the lead to be told", async () =>
    h.slack.ephemerals.find((e) => e.user === "U0LEE"),
  );
  assert.deepEqual([told.channel, told.thread_ts], [question.channel, question.threadTs]);

  await h.clickCard("U0BILLINGLEAD", APPROVAL_APPROVE, approval, approval.card_ts ?? "");
  await h.until("the refund", async () => (await refundsOf(h.db.db)).length === 1 || undefined);
  assert.equal(h.model.requestsFor("customer-service").length, 0, "nobody else answered it");
});

// A lead's "@Baton why 149?" under an approval card was kept for the agent, who reads it only after
// the decision: the lead heard nothing, and waited on an answer that could not come first.
test("a question in the thread of a task waiting on an approval tells its writer, once, that the agent reads it after the decision", async () => {
  const h = await startHarness({ script: scriptByAgent(directRefundScript()) });
  const { ts } = await h.mention(REFUND);
  const approval = await waitForApprovalCard(h);
  const question = { user: "U0LEE", channel: CHANNEL, threadTs: ts };
  const text = "<@U0BATONBOT> why 149, was the item checked?";
  const asked = h.slack.addMessage({ ...question, text }).ts;
  // Slack sends a mention twice, as app_mention and as message: one note.
  await deliverEvent(h.endpoint, SIGNING_SECRET, appMentionEvent({ ...question, text, ts: asked }));
  await deliverEvent(h.endpoint, SIGNING_SECRET, messageEvent({ ...question, text, ts: asked }));
  const told = await h.until("the lead to be told", async () =>
    h.slack.ephemerals.find((e) => e.user === "U0LEE"),
  );
  assert.equal(told.channel, CHANNEL);
  assert.equal(told.thread_ts, ts);
  assert.match(
    String(told.text),
    /^Billing is waiting for a decision on its approval card \(to issue a refund\), and reads your message only after it\./,
  );
  assert.equal(h.model.requestsFor("billing").length, 1, "no turn for the question");

  await h.clickCard("U0BILLINGLEAD", APPROVAL_APPROVE, approval, ts);
  await h.until("the refund", async () => (await refundsOf(h.db.db)).length === 1 || undefined);
  await h.until("the answer", async () => h.model.requestsFor("billing").length === 2 || undefined);
  assert.match(JSON.stringify(h.model.requestsFor("billing")[1]), /why 149/, "read after it");
  assert.equal(h.slack.ephemerals.filter((e) => e.user === "U0LEE").length, 1, "told once");
});

// An open escalation to a named person reaches them by a direct message: they do not follow the
// task's thread, so a requester's "it is smoking again" there reached nobody until it was taken.
test("a reply to an open escalation a named person owns pages them in its thread, not for their own", async () => {
  const OWNER = "U0OWNER";
  const script = escalationScript();
  const note = { ...ESCALATION_NOTE, lane: "owner_escalation" };
  script["customer-service"]?.splice(1, 1, {
    toolCalls: [{ name: "escalate_to_human", arguments: note }],
  });
  const h = await startHarness({ script: scriptByAgent(script) });
  const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(h);
  assert.deepEqual(escalation.owner, { kind: "user", id: OWNER });
  const pages = () =>
    postsInThread(h.slack, ts).filter((c) => String(c.args.text).startsWith(`<@${OWNER}>`));

  await h.reply(ts, "I am calling Dana now", { user: OWNER });
  await allSent(h, escalation.task_id);
  assert.equal(pages().length, 0, "not paged for their own reply");

  await h.reply(ts, "it is smoking again, please hurry");
  const page = await h.until("the owner paged", async () => pages().at(0));
  assert.equal(page?.args.channel, CHANNEL);
  assert.match(String(page?.args.text), /new reply here on the task escalated to you/);
  const after = await taskOfThread(h.db.db, ts);
  assert.deepEqual([after?.status, after?.owner_id], ["waiting_human", OWNER]);
  assert.equal(h.model.requestsFor("customer-service").length, 2, "no agent ran on the reply");
});

// An open escalation owned by a lane's user group or channel paged nobody for a reply: its people
// heard of the card once, and "it is smoking again" sat in a thread none of them followed.

/** Customer Service escalates to the support lane, given to `lane` (agents.yml gives it #support). */
async function escalatedTo(lane?: string) {
  const agentsFile = lane === undefined ? undefined : agentsFileWith([SUPPORT_LANE, lane]);
  const h = await startHarness({
    script: scriptByAgent(escalationScript()),
    ...(agentsFile && { agentsFile }),
  });
  const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(h);
  // The card's notice to its owners is sent: one waiting would count as their page.
  await allSent(h, escalation.task_id);
  return { h, ts, escalation };
}

const newReplies = (calls: SlackCall[]) =>
  calls.filter((c) => /new reply/.test(String(c.args.text)));

/** Two replies, the second while the first one's page waits to be sent: the pages in the thread. */
async function repliesWhileThePageWaits(
  { h, ts, taskId }: { h: Harness; ts: string; taskId: string },
  isPage: (c: SlackCall) => boolean,
) {
  const held = h.slack.holdAnswer("chat.postMessage", isPage);
  await h.reply(ts, "it is smoking again, please hurry");
  await h.slack.waitForCall("chat.postMessage", isPage, 15_000);
  await h.reply(ts, "hello? anyone?");
  held.release();
  await allSent(h, taskId);
  return newReplies(postsInThread(h.slack, ts));
}

test("a reply to an open escalation a user group owns pages the group in its thread, once while a page waits", async () => {
  const { h, ts, escalation } = await escalatedTo("    support:\n      groups: [S0BILLINGLEADS]\n");
  assert.deepEqual(escalation.owner, { kind: "group", id: "S0BILLINGLEADS" });
  const pages = await repliesWhileThePageWaits({ h, ts, taskId: escalation.task_id }, (c) =>
    String(c.args.text).startsWith("<!subteam^S0BILLINGLEADS> There"),
  );
  assert.deepEqual(
    pages.map((c) => c.args.text),
    ["<!subteam^S0BILLINGLEADS> There is a new reply here on the task escalated to you."],
  );
  const after = await taskOfThread(h.db.db, ts);
  assert.deepEqual([after?.status, after?.owner_id], ["waiting_human", "S0BILLINGLEADS"]);
  assert.equal(h.model.requestsFor("customer-service").length, 2, "no agent ran on the replies");
});

// A member of the group who writes in the thread is the owner at work (any of them may take it
// over from there); the group's mention would page them about their own words too.
test("a reply by a member of the group that owns an open escalation pages nobody", async () => {
  const { h, ts, escalation } = await escalatedTo("    support:\n      groups: [S0BILLINGLEADS]\n");
  await h.reply(ts, "I am calling Dana now", { user: "U0LEE" });
  await allSent(h, escalation.task_id);
  assert.equal(
    newReplies(postsInThread(h.slack, ts)).length,
    0,
    "the group paged for its own reply",
  );
});

// The membership check runs before Slack has its acknowledgement: a Slack slow to list the group
// must not hold the reply (and its 3 s) up; the group is paged, once too often rather than never.
test("a reply whose group's members Slack is slow to list still pages the group, without waiting for them", async () => {
  const { h, ts, escalation } = await escalatedTo("    support:\n      groups: [S0BILLINGLEADS]\n");
  const slow = h.slack.holdAnswer("usergroups.users.list");
  const accepted = h.reply(ts, "it is smoking again, please hurry", { user: "U0LEE" });
  await slow.arrived;
  await accepted;
  await allSent(h, escalation.task_id);
  slow.release();
  assert.deepEqual(
    newReplies(postsInThread(h.slack, ts)).map((c) => c.args.text),
    ["<!subteam^S0BILLINGLEADS> There is a new reply here on the task escalated to you."],
  );
});

test("a reply to an open escalation a lane's channel owns is posted in that channel, with a link to the thread", async () => {
  const { h, ts, escalation } = await escalatedTo();
  assert.deepEqual(escalation.owner, { kind: "channel", id: "C0SUPPORT" });
  await h.reply(ts, "it is smoking again, please hurry");
  const page = await h.until("#support to hear of it", async () =>
    newReplies(h.slack.callsTo("chat.postMessage")).find((c) => !c.failed),
  );
  assert.deepEqual([page.args.channel, page.args.thread_ts], ["C0SUPPORT", undefined]);
  assert.match(
    String(page.args.text),
    /^There is a new reply on the task escalated to this channel \(.+\): Dana says the lamp/,
  );
  assert.match(String(page.args.text), new RegExp(`${CHANNEL}/p${ts.replace(".", "")}`));
});

// A lane the file leaves out is the task's channel's: the card is in the thread the reply is in,
// which its members do not follow. The requester, a member too, is no reason to say nothing.
test("a reply to an open escalation the task's own channel owns is sent to the channel from the thread, once while it waits", async () => {
  const { h, ts, escalation } = await escalatedTo("");
  assert.deepEqual(escalation.owner, { kind: "channel", id: CHANNEL });
  const pages = await repliesWhileThePageWaits({ h, ts, taskId: escalation.task_id }, (c) =>
    /new reply/.test(String(c.args.text)),
  );
  assert.equal(pages.length, 1, "paged once");
  const [page] = pages as [SlackCall];
  assert.equal(page.args.text, "There is a new reply on the task escalated to this channel.");
  assert.equal(
    String(page.args.reply_broadcast),
    "true",
    "the channel sees it, not only the thread",
  );
});

// A mention of Baton in the thread of a task that waits on a person runs no agent. The person who
// took it over asked "@Baton what is the stock of LAMP-OAK?" and an owner of the open escalation
// wrote "@Baton customer-service: offer a replacement lamp": neither heard anything, and each
// waited on an agent's answer that no agent was ever asked for.

/** Slack sends a mention twice, as app_mention and as message: both, as Slack would. */
async function mentionInThread(h: Harness, ts: string, user: string, text: string) {
  const where = { user, channel: CHANNEL, threadTs: ts };
  const asked = h.slack.addMessage({ ...where, text }).ts;
  await deliverEvent(h.endpoint, SIGNING_SECRET, appMentionEvent({ ...where, text, ts: asked }));
  await deliverEvent(h.endpoint, SIGNING_SECRET, messageEvent({ ...where, text, ts: asked }));
}

test("the person holding a task who mentions Baton without naming an agent is told, once, how to hand it on", async () => {
  const { h, ts } = await takenOver();
  await mentionInThread(h, ts, SUPPORT_LEAD, "<@U0BATONBOT> what is the stock of LAMP-OAK?");
  const told = await h.until("the holder to be told", async () =>
    h.slack.ephemerals.find((e) => e.user === SUPPORT_LEAD),
  );
  assert.deepEqual([told.channel, told.thread_ts], [CHANNEL, ts]);
  assert.match(String(told.text), /^You took this task over, so no agent reads this message\./);
  assert.match(String(told.text), /`@Baton billing: /);
  assert.match(String(told.text), /`\/baton done`/);
  const after = await taskOfThread(h.db.db, ts);
  assert.deepEqual([after?.status, after?.owner_id], ["waiting_human", SUPPORT_LEAD]);
  assert.equal(h.model.requestsFor("customer-service").length, 2, "no agent ran on it");
  assert.equal(h.slack.ephemerals.filter((e) => e.user === SUPPORT_LEAD).length, 1, "told once");
});

test("a mention in the thread of an open escalation is told, privately, that the work waits on its card", async () => {
  const { h, ts, escalation } = await escalatedTo();
  const text = "<@U0BATONBOT> customer-service: offer a replacement lamp";
  await mentionInThread(h, ts, SUPPORT_LEAD, text);
  const told = await h.until("the lead to be told", async () =>
    h.slack.ephemerals.find((e) => e.user === SUPPORT_LEAD),
  );
  assert.deepEqual([told.channel, told.thread_ts], [CHANNEL, ts]);
  assert.equal(
    told.text,
    "No agent reads this message now: this task waits on its escalation card, where the people it names take it over or send it back to an agent.",
  );
  const after = await taskOfThread(h.db.db, ts);
  assert.deepEqual([after?.status, after?.owner_id], ["waiting_human", "C0SUPPORT"]);
  assert.equal(escalation.status, "open");
  assert.equal(h.model.requestsFor("customer-service").length, 2, "no agent ran on it");

  // A plain reply, which asks Baton nothing, is only passed on to the card's owners.
  await h.reply(ts, "it is smoking again, please hurry");
  await allSent(h, escalation.task_id);
  assert.equal(h.slack.ephemerals.length, 1);
});
