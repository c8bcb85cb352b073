import assert from "node:assert/strict";
import { after, test } from "node:test";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { testServerUrl } from "../support/db.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForApprovalCard } from "../support/observe.ts";
import { directRefundScript, finishedTask, refundsOf } from "../support/scripts-humans.ts";
import { startPostgresProxy } from "../support/tcp-proxy.ts";

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
