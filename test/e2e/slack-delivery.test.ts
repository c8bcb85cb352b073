import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { sql } from "kysely";
import { runMaintenance } from "../../src/runtime/maintenance.ts";
import {
  CHANNEL,
  type Harness,
  REQUESTER,
  SIGNING_SECRET,
  startHarness,
} from "../support/harness.ts";
import type { Script } from "../support/model-server.ts";
import {
  postsInThread,
  postsWhenAtLeast,
  requestText,
  tasksInThread,
  taskWithStatus,
  textOf,
} from "../support/observe.ts";
import { SLACK_DEFAULTS } from "../support/slack-emulator.ts";
import {
  appMentionEvent,
  deliverEvent,
  messageEvent,
  type SlackEvent,
} from "../support/slack-signing.ts";

// Customer Service answers every turn, quoting the latest user message so each answer is traceable.
const script: Script = (request) => {
  const users = request.messages.filter((m) => m.role === "user");
  const latest = users.at(-1);
  return { content: `Answer to: ${latest ? textOf(latest) : "?"}` };
};

let h: Harness;
before(async () => {
  h = await startHarness({ script });
});
after(async () => {
  await h.close();
});

function seedMention(text: string) {
  return h.slack.addMessage({ channel: CHANNEL, user: REQUESTER, text: `<@U0BATONBOT> ${text}` });
}

function deliver(event: SlackEvent, options: Parameters<typeof deliverEvent>[3] = {}) {
  return deliverEvent(h.endpoint, SIGNING_SECRET, event, options);
}

async function eventRows(eventId: string) {
  return h.db.db
    .selectFrom("slack_events")
    .selectAll()
    .where("event_id", "=", `event:${eventId}`)
    .execute();
}

function requestsMentioning(text: string) {
  return h.model.requests.filter((r) => requestText(r.body).includes(text));
}

test("a Slack retry of the same event starts one task and posts one reply", async () => {
  const first = await h.mention("retry check: where is order 1042?", { eventId: "EvRETRY0001" });
  assert.equal(first.status, 200);
  const retry = await h.mention("retry check: where is order 1042?", {
    eventId: "EvRETRY0001",
    retryNum: 1,
    ts: first.ts,
  });
  assert.equal(retry.status, 200, "a retry is acknowledged, so Slack stops retrying");

  await h.until("the task to finish", () => taskWithStatus(h.db.db, first.ts, "done"));
  assert.equal((await tasksInThread(h.db.db, first.ts)).length, 1);
  assert.equal((await postsWhenAtLeast(h, first.ts, 1)).length, 1);
  assert.equal(requestsMentioning("retry check").length, 1, "the model was asked once");
});

test("one message delivered as app_mention and as message (twin events) starts one task", async () => {
  const text = "<@U0BATONBOT> twin check: where is order 1042?";
  const { ts } = seedMention("twin check: where is order 1042?");
  const asMention = appMentionEvent({ user: REQUESTER, channel: CHANNEL, text, ts });
  const asMessage = messageEvent({ user: REQUESTER, channel: CHANNEL, text, ts });
  const [a, b] = await Promise.all([
    deliver(asMention, { eventId: "EvTWIN00001" }),
    deliver(asMessage, { eventId: "EvTWIN00002" }),
  ]);
  assert.equal(a.status, 200);
  assert.equal(b.status, 200);

  await h.until("the task to finish", () => taskWithStatus(h.db.db, ts, "done"));
  assert.equal((await tasksInThread(h.db.db, ts)).length, 1);
  assert.equal((await postsWhenAtLeast(h, ts, 1)).length, 1);
  assert.equal(requestsMentioning("twin check").length, 1);
});

test("a request with a bad signature is refused with 401 and starts nothing", async () => {
  const { ts } = seedMention("forged: refund everything");
  const event = appMentionEvent({
    user: REQUESTER,
    channel: CHANNEL,
    text: "<@U0BATONBOT> forged: refund everything",
    ts,
  });
  const res = await deliverEvent(h.endpoint, "not-the-signing-secret", event, {
    eventId: "EvFORGED001",
  });
  assert.equal(res.status, 401);
  assert.deepEqual(await tasksInThread(h.db.db, ts), []);
  assert.deepEqual(await eventRows("EvFORGED001"), []);
});

test("a correctly signed request older than five minutes is refused with 401 (replay)", async () => {
  const { ts } = seedMention("replayed: where is order 1042?");
  const event = appMentionEvent({
    user: REQUESTER,
    channel: CHANNEL,
    text: "<@U0BATONBOT> replayed: where is order 1042?",
    ts,
  });
  const sixMinutesAgo = Math.floor(Date.now() / 1000) - 6 * 60;
  const res = await deliver(event, { eventId: "EvREPLAY001", timestamp: sixMinutesAgo });
  assert.equal(res.status, 401);
  assert.deepEqual(await tasksInThread(h.db.db, ts), []);
  assert.deepEqual(await eventRows("EvREPLAY001"), []);
});

test("bot messages in a task's thread, its own or another bot's, are ignored", async () => {
  const { ts } = await h.mention("bot check: where is order 1042?");
  const task = await h.until("the task to finish", () => taskWithStatus(h.db.db, ts, "done"));
  await postsWhenAtLeast(h, ts, 1);
  const requestsBefore = h.model.requests.length;

  const own = {
    ...messageEvent({
      user: SLACK_DEFAULTS.botUserId,
      channel: CHANNEL,
      text: "Answer to: bot check (as posted by Baton)",
      threadTs: ts,
    }),
    bot_id: SLACK_DEFAULTS.botId,
  };
  const other = {
    ...messageEvent({
      user: "U0OTHERBOT",
      channel: CHANNEL,
      text: "<@U0BATONBOT> I am another bot, please refund me",
      threadTs: ts,
    }),
    bot_id: "B0OTHERBOT",
    subtype: "bot_message",
  };
  assert.equal((await deliver(own, { eventId: "EvBOTOWN001" })).status, 200);
  assert.equal((await deliver(other, { eventId: "EvBOTOTHER1" })).status, 200);

  // Events are accepted (or not) before Slack gets its 200, so the rows are final by now.
  assert.deepEqual(await eventRows("EvBOTOWN001"), []);
  assert.deepEqual(await eventRows("EvBOTOTHER1"), []);
  const inputs = await h.db.db
    .selectFrom("task_inputs")
    .selectAll()
    .where("task_id", "=", task.id)
    .execute();
  assert.deepEqual(inputs, []);
  const after = await taskWithStatus(h.db.db, ts, "done");
  assert.equal(after?.step_no, task.step_no, "the task did not run again");
  assert.equal(h.model.requests.length, requestsBefore);
  assert.equal(postsInThread(h.slack, ts).length, 1);
});

test("a reply in the thread after the answer continues the same task", async () => {
  const { ts } = await h.mention("follow-up check: where is order 1042?");
  const first = await h.until("the first answer", () => taskWithStatus(h.db.db, ts, "done"));

  const res = await h.reply(ts, "and when will it arrive at my office?");
  assert.equal(res.status, 200);

  await h.until("the second answer", async () => {
    const task = await taskWithStatus(h.db.db, ts, "done");
    return task && task.step_no > first.step_no && postsInThread(h.slack, ts).length === 2;
  });
  const tasks = await tasksInThread(h.db.db, ts);
  assert.equal(tasks.length, 1);
  assert.equal(tasks[0]?.id, first.id);

  const followUps = h.model
    .requestsFor("customer-service")
    .filter((r) => requestText(r.body).includes("follow-up check"));
  assert.equal(followUps.length, 2);
  const last = followUps.at(-1)?.body.messages ?? [];
  assert.ok(
    last.some((m) => m.role === "user" && textOf(m).includes("when will it arrive at my office")),
    "the reply reaches the agent that owns the task",
  );
  const posts = postsInThread(h.slack, ts);
  assert.match(String(posts.at(-1)?.args.text), /when will it arrive at my office/);
  const consumed = await h.db.db
    .selectFrom("task_inputs")
    .select(["text", "consumed_at_step"])
    .where("task_id", "=", first.id)
    .execute();
  assert.equal(consumed.length, 1);
  assert.notEqual(consumed[0]?.consumed_at_step, null);
});

test("a message that could not be stored is not acknowledged, so Slack delivers it again", {}, async () => {
  // The database refuses the write (as when its connection is lost mid-request).
  await sql`alter table slack_events rename to slack_events_unavailable`.execute(h.db.db);
  let first: Awaited<ReturnType<Harness["mention"]>>;
  try {
    first = await h.mention("storage check: where is order 1042?", { eventId: "EvSTORE0001" });
  } finally {
    await sql`alter table slack_events_unavailable rename to slack_events`.execute(h.db.db);
  }
  assert.ok(first.status >= 500, `answered ${first.status}: Slack would not retry`);
  assert.deepEqual(await tasksInThread(h.db.db, first.ts), []);

  // Slack's retry, once the database is back, starts the task.
  const retry = await h.mention("storage check: where is order 1042?", {
    eventId: "EvSTORE0001",
    retryNum: 1,
    ts: first.ts,
  });
  assert.equal(retry.status, 200);
  await h.until("the task to finish", () => taskWithStatus(h.db.db, first.ts, "done"));
  assert.equal((await postsWhenAtLeast(h, first.ts, 1)).length, 1);
});

test("an answer decided while Slack is down is posted once Slack answers again, however long it took", async () => {
  // More failed tries than the run and the sweeps used to allow before giving a row up for dead.
  const FAILURES = 12;
  h.slack.failNext("chat.postMessage", { error: "service_unavailable" }, FAILURES);
  const { ts } = await h.mention("outage check: where is order 1042?");
  const task = await h.until("the run to end", async () => {
    const done = await taskWithStatus(h.db.db, ts, "done");
    return done?.lease_owner === null && done;
  });
  const triesIn = () =>
    h.slack.callsTo("chat.postMessage").filter((c) => c.args.thread_ts === ts).length;
  const outbox = () =>
    h.db.db
      .selectFrom("slack_outbox")
      .select(["status", "attempts"])
      .where("task_id", "=", task.id)
      .execute();

  // Each sweep finds the row stranded and due again (as minutes passing would leave it), and
  // Slack fails it, until Slack is back.
  for (let sweep = 0; triesIn() < FAILURES && sweep < FAILURES; sweep++) {
    await sql`update slack_outbox set created_at = created_at - interval '1 minute',
      next_attempt_at = now() - interval '1 second' where task_id = ${task.id}`.execute(h.db.db);
    await runMaintenance(h.baton.deps);
    assert.deepEqual(
      (await outbox()).map((r) => r.status),
      ["retry"],
      `still to be sent after ${triesIn()} failed tries`,
    );
  }
  assert.equal(triesIn(), FAILURES);

  await sql`update slack_outbox set next_attempt_at = now() where task_id = ${task.id}`.execute(
    h.db.db,
  );
  await runMaintenance(h.baton.deps);
  assert.deepEqual(await outbox(), [{ status: "sent", attempts: FAILURES }]);
  const posts = postsInThread(h.slack, ts);
  assert.equal(posts.length, 1);
  assert.match(String(posts[0]?.args.text), /outage check/);
});
