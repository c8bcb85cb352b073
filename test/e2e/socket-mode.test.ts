import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { sql } from "kysely";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { CHANNEL, type Harness, REQUESTER, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForApprovalCard } from "../support/observe.ts";
import { resetFlow1Data, whereIsMyOrderScript } from "../support/scripts.ts";
import { finishedTask, orderReturnScript, refundsOf } from "../support/scripts-humans.ts";
import { appMentionEvent, blockActionsPayload, eventEnvelope } from "../support/slack-signing.ts";

// Flow 1 twice: once as it first arrives, once for the envelope Slack sends again.
const once = whereIsMyOrderScript();
let h: Harness;
before(async () => {
  h = await startHarness({
    script: scriptByAgent(
      Object.fromEntries(Object.entries(once).map(([agent, r]) => [agent, [...r, ...r]])),
    ),
    socketMode: true,
  });
  await h.slack.socketMode.connected();
});
after(async () => {
  await h.close();
});

function mentionEnvelope(text: string, eventId: string) {
  const ts = h.slack.addMessage({ channel: CHANNEL, user: REQUESTER, text }).ts;
  const body = eventEnvelope(appMentionEvent({ user: REQUESTER, channel: CHANNEL, text, ts }), {
    eventId,
  });
  return { ts, body };
}

async function storedEvent(eventId: string) {
  return h.db.db
    .selectFrom("slack_events")
    .select("task_id")
    .where("event_id", "=", `event:${eventId}`)
    .executeTakeFirst();
}

test("Socket Mode: a mention plays flow 1, and its envelope is acknowledged once the event is stored", async () => {
  const { ts, body } = mentionEnvelope("<@U0BATONBOT> where is order 1042?", "EvSOCKET0001");
  const ack = await h.slack.socketMode.send("events_api", body);
  assert.ok(ack, "acknowledged within Slack's three seconds");
  assert.ok(await storedEvent("EvSOCKET0001"), "stored before the acknowledgement went out");
  const task = await h.until("the task to finish", () => finishedTask(h.db.db, ts));
  const answer = h.slack
    .callsTo("chat.postMessage")
    .filter((c) => c.args.thread_ts === ts && c.args.username === "Customer Service")
    .at(-1);
  assert.match(String(answer?.args.text), /on the way/);
  assert.equal(task.owner_id, "customer-service");

  // The same envelope again (Slack's retry): acknowledged, and nothing starts twice.
  const again = await h.slack.socketMode.send("events_api", body, {
    retryAttempt: 1,
    retryReason: "timeout",
  });
  assert.ok(again);
  const tasks = await h.db.db
    .selectFrom("tasks")
    .select("id")
    .where("thread_ts", "=", ts)
    .execute();
  assert.equal(tasks.length, 1);

  // No /slack/events in Socket Mode; the port still serves the health check and the metrics.
  const health = await fetch(new URL("/healthz", h.endpoint));
  assert.equal(await health.text(), "ok");
  const metrics = await (await fetch(new URL("/metrics", h.endpoint))).text();
  assert.match(metrics, /baton_tasks_started_total/);
});

test("Socket Mode: an envelope whose event could not be stored is not acknowledged, and Slack's retry starts the task", async () => {
  const { ts, body } = mentionEnvelope("<@U0BATONBOT> where is order 1042, again?", "EvSOCKET0002");
  // The database refuses the write (as when its connection is lost mid-request).
  await sql`alter table slack_events rename to slack_events_unavailable`.execute(h.db.db);
  let ack: Awaited<ReturnType<Harness["slack"]["socketMode"]["send"]>>;
  try {
    ack = await h.slack.socketMode.send("events_api", body, { timeoutMs: 1500 });
  } finally {
    await sql`alter table slack_events_unavailable rename to slack_events`.execute(h.db.db);
  }
  assert.equal(ack, undefined, "not acknowledged: Slack sends it again");
  assert.equal(await storedEvent("EvSOCKET0002"), undefined);

  await resetFlow1Data(h.db.db);
  const retry = await h.slack.socketMode.send("events_api", body, {
    retryAttempt: 1,
    retryReason: "timeout",
  });
  assert.ok(retry, "the retry is acknowledged");
  await h.until("the task to finish", () => finishedTask(h.db.db, ts));
});

test("Socket Mode: an approval click arrives as an interactive envelope, is acknowledged after it is decided, and the refund runs once", async () => {
  const billing = await startHarness({
    script: scriptByAgent(orderReturnScript()),
    socketMode: true,
  });
  try {
    await billing.slack.socketMode.connected();
    const text = "<@U0BATONBOT> I'd like to return order 1077, please refund me";
    const ts = billing.slack.addMessage({ channel: CHANNEL, user: REQUESTER, text }).ts;
    const mention = eventEnvelope(appMentionEvent({ user: REQUESTER, channel: CHANNEL, text, ts }));
    assert.ok(await billing.slack.socketMode.send("events_api", mention));
    const approval = await waitForApprovalCard(billing, "the refund to wait on its card");
    const click = blockActionsPayload({
      userId: "U0LEE",
      actionId: APPROVAL_APPROVE,
      value: approval.id,
      channel: CHANNEL,
      messageTs: approval.card_ts ?? "",
      threadTs: ts,
    });
    assert.ok(await billing.slack.socketMode.send("interactive", click), "acknowledged");
    const decided = await billing.db.db
      .selectFrom("approvals")
      .select(["status", "decided_by"])
      .where("id", "=", approval.id)
      .executeTakeFirstOrThrow();
    assert.deepEqual(
      decided,
      { status: "approved", decided_by: "U0LEE" },
      "decided before the ack",
    );
    await billing.until("the task to finish", () => finishedTask(billing.db.db, ts));
    assert.equal((await refundsOf(billing.db.db)).length, 1);
  } finally {
    await billing.close();
  }
});
