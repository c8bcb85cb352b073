import assert from "node:assert/strict";
import { test } from "node:test";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import { CHANNEL, type Harness, harnessPerTest } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { postsInThread, waitForEscalationCard } from "../support/observe.ts";
import { escalationScript, taskOfThread } from "../support/scripts-humans.ts";
import type { SlackCall } from "../support/slack-emulator.ts";

// A person who only clicked "Take it over" on a card in a channel thread does not follow that
// thread: Slack tells them of nothing written there unless they are mentioned. A requester's
// "any update?" under the card they took went unheard while they held the task.

const startHarness = harnessPerTest();

const SUPPORT_LEAD = "U0SUPPORTLEAD";

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
  const isPage = (c: SlackCall) => String(c.args.text).startsWith(`<@${SUPPORT_LEAD}>`);
  // Slack takes the page, and Baton does not hear so until the second reply is in.
  const held = h.slack.holdAnswer("chat.postMessage", isPage);
  await h.reply(ts, "any update?");
  await h.slack.waitForCall("chat.postMessage", isPage, 15_000);
  await h.reply(ts, "hello? anyone?");
  held.release();
  await allSent(h, task.id);
  assert.equal(pagesOf(h, ts).length, 1);
});
