import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { sql } from "kysely";
import { deliverOutbox } from "../../src/runtime/outbox.ts";
import { clip, plainText } from "../../src/slack/mrkdwn.ts";
import { APPROVAL_APPROVE, APPROVAL_REJECT } from "../../src/slack/views/approval-card.ts";
import { digestMessage } from "../../src/slack/views/digest.ts";
import {
  CHANNEL,
  type Harness,
  REQUESTER,
  SIGNING_SECRET,
  startHarness,
} from "../support/harness.ts";
import { type Script, scriptByAgent } from "../support/model-server.ts";
import {
  outboxWaits,
  taskInThread,
  taskWithStatus,
  waitForApprovalCard,
} from "../support/observe.ts";
import * as threads from "../support/outbox-threads.ts";
import { flowOneByState, whereIsMyOrderScript } from "../support/scripts.ts";
import {
  auditKinds,
  directRefundScript,
  finishedTask,
  taskOfThread,
} from "../support/scripts-humans.ts";
import { deliverCommand, deliverEvent, messageEvent } from "../support/slack-signing.ts";

// Posting to Slack: failures, lost answers, 429s, odd text, escaping, the bot's identity, forms that
// do not open, bidi controls that could reverse Baton's words. One suite per former test file.

describe("slack-post-failure", async () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ script: scriptByAgent(whereIsMyOrderScript()) });
  });
  after(async () => {
    await h.close();
  });

  test("a post that Slack refuses mid-chain is sent again, and the thread keeps its order", async () => {
    // The first handoff card fails; the run's next turns are already under way while it is posted.
    h.slack.failNext("chat.postMessage", { error: "internal_error" });
    const { status, ts } = await h.mention("where is order 1042?");
    assert.equal(status, 200);
    const task = await h.until("the task to finish", () => finishedTask(h.db.db, ts));

    const attempts = h.slack
      .callsTo("chat.postMessage")
      .filter((c) => c.args.channel === CHANNEL && c.args.thread_ts === ts);
    assert.equal(attempts.length, 6, "five messages, one of them twice");
    const thread = h.slack.messagesIn(CHANNEL, ts).slice(1);
    assert.deepEqual(
      thread.map((m) => m.username),
      ["Customer Service", "Fulfillment", "Inventory", "Fulfillment", "Customer Service"],
      "each message once, in the order the agents spoke",
    );
    const outbox = await h.db.db
      .selectFrom("slack_outbox")
      .select(["status", "attempts", "slack_ts"])
      .where("task_id", "=", task.id)
      .orderBy("id")
      .execute();
    assert.deepEqual(
      outbox.map((r) => [r.status, r.attempts]),
      [
        ["sent", 1],
        ["sent", 0],
        ["sent", 0],
        ["sent", 0],
        ["sent", 0],
      ],
    );
    assert.deepEqual(
      outbox.map((r) => r.slack_ts),
      thread.map((m) => m.ts),
      "each row points at its message",
    );
  });
});

/** Flow 1's five messages, each once in the thread, once its task is done; and its outbox rows. */
async function postedOnce(harness: Harness, ts: string, why: string) {
  const task = await harness.until("the task to finish", () => finishedTask(harness.db.db, ts));
  const thread = harness.slack.messagesIn(CHANNEL, ts).slice(1);
  assert.deepEqual(
    thread.map((m) => m.username),
    ["Customer Service", "Fulfillment", "Inventory", "Fulfillment", "Customer Service"],
    why,
  );
  const outbox = await harness.db.db
    .selectFrom("slack_outbox")
    .select(["status", "slack_ts", "attempts"])
    .where("task_id", "=", task.id)
    .orderBy("id")
    .execute();
  return { thread, outbox };
}

describe("slack-post-lost-answer", async () => {
  let h: Harness | undefined;
  after(async () => {
    await h?.close();
  });

  test("a post whose answer is lost after Slack stored it is not posted again, nor a rate-limited one lost", async () => {
    const harness = await startHarness({ script: flowOneByState(async () => {}) });
    h = harness;
    // Slack stores the first message and answers 503; the second post is rate limited for a second.
    harness.slack.failNext("chat.postMessage", {
      error: "service_unavailable",
      status: 503,
      stored: true,
    });
    const { ts } = await harness.mention("where is order 1042?");
    harness.slack.failNext("chat.postMessage", { error: "ratelimited", retryAfter: 1 });
    const { thread, outbox } = await postedOnce(
      harness,
      ts,
      "each message once: the stored one was found in the thread, the rate-limited one waited",
    );
    assert.deepEqual(
      outbox.map((r) => [r.status, r.slack_ts]),
      thread.map((m) => ["sent", m.ts]),
    );
    assert.deepEqual(
      outbox.map((r) => r.attempts),
      [1, 0, 0, 0, 0],
      "the lost answer went back to the outbox; the rate limit was waited out, no failed try",
    );
  });
});

describe("slack-post-silent", async () => {
  let h: Harness | undefined;
  let release = () => {};
  after(async () => {
    release();
    await h?.close();
  });

  test("a post Slack took but never answered times out, and is found in the thread, not posted twice", async () => {
    const harness = await startHarness({
      script: scriptByAgent(whereIsMyOrderScript()),
      slackTimeoutSeconds: 1,
    });
    h = harness;
    // Slack stores the first handoff card and then goes silent on that connection.
    const held = harness.slack.holdAnswer(
      "chat.postMessage",
      (c) => c.args.thread_ts !== undefined,
    );
    release = held.release;
    const { ts } = await harness.mention("where is order 1042?");
    await held.arrived;
    const { thread, outbox } = await postedOnce(
      harness,
      ts,
      "each message once: the unanswered one was found in the thread",
    );
    assert.deepEqual(
      outbox.map((r) => [r.status, r.slack_ts, r.attempts]),
      thread.map((m, i) => ["sent", m.ts, i === 0 ? 1 : 0]),
      "the timed-out post went back to the outbox once",
    );
  });
});

describe("ephemeral-once", async () => {
  // An ephemeral cannot be found afterwards, so a try whose answer was lost (a 5xx, a timeout) is
  // not made again: Slack may have shown it already, and a retry would show it twice.

  let h: Harness;
  let release = () => {};
  before(async () => {
    h = await startHarness({ script: () => ({ content: "unused" }), slackTimeoutSeconds: 1 });
  });
  after(async () => {
    release();
    await h.close();
  });

  const shownTo = (user: string) => h.slack.ephemerals.filter((e) => e.user === user);
  const triedFor = (user: string) =>
    h.slack.callsTo("chat.postEphemeral").filter((c) => c.args.user === user);

  test("a failed click's notice that Slack showed, then answered with a 500, is shown once, and not sent by DM", async () => {
    h.slack.failNext("chat.postEphemeral", { error: "internal_error", status: 500, stored: true });
    // A button whose value is no approval's id fails in the listener.
    const card = { id: "not-an-id", card_ts: "1700000000.000100" };
    const click = await h.clickCard("U0ONE", APPROVAL_APPROVE, card, "1700000000.000100");
    assert.equal(click.status, 200);
    assert.equal(triedFor("U0ONE").length, 1, "asked once");
    assert.match(String(shownTo("U0ONE")[0]?.text), /nothing was done/);
    assert.equal(shownTo("U0ONE").length, 1);
    const dms = h.slack.callsTo("chat.postMessage").filter((c) => c.args.channel === "U0ONE");
    assert.equal(dms.length, 0, "the notice may have been shown: not said again by DM");
  });

  test("words to a clicker that Slack showed and never answered time out, and are shown once", async () => {
    const held = h.slack.holdAnswer("chat.postEphemeral");
    release = held.release;
    const card = { id: randomUUID(), card_ts: "1700000000.000200" };
    await h.clickCard("U0TWO", APPROVAL_APPROVE, card, "1700000000.000200");
    await held.arrived;
    await h.baton.deps.afterwards.drain();
    assert.equal(triedFor("U0TWO").length, 1, "asked once");
    assert.match(String(shownTo("U0TWO")[0]?.text), /no longer in Baton's records/);
    assert.equal(shownTo("U0TWO").length, 1);
  });

  test("an answer to /baton that Slack never answers times out, and is not sent again", async () => {
    const held = h.slack.holdAnswer("response_url");
    release = held.release;
    await deliverCommand(h.endpoint, SIGNING_SECRET, {
      command: "/baton",
      text: "help",
      user_id: "U0THREE",
      channel_id: CHANNEL,
      response_url: h.slack.responseUrl,
    });
    await held.arrived;
    // Well past SLACK_TIMEOUT_SECONDS (1 s), well short of undici's own 300 s.
    const gaveUp = await Promise.race([
      h.baton.deps.afterwards.drain().then(() => true),
      sleep(5_000).then(() => false),
    ]);
    assert.ok(gaveUp, "the answer timed out with the other Slack calls");
    assert.equal(h.slack.callsTo("response_url").length, 1, "asked once");
  });
});

describe("outbox-rate-limit-wait", async () => {
  // The sweep sends a thread's rows holding them locked, so that no other deliverer sends them too
  // or past each other. Slack's 429 asks to wait (Retry-After, up to a minute): the sweep lets go at
  // once, neither keeping those locks nor a transaction open nor sleeping (a deadline's or a digest's
  // delivery would wait behind it). The thread still goes out in order, each message once, after the
  // wait.

  let h: Harness;
  before(async () => {
    h = await startHarness({ script: () => ({ content: "unused" }) });
  });
  after(async () => {
    await h.close();
  });

  /** Sessions other than this one holding slack_outbox rows locked, or sitting in a transaction. */
  async function holders(): Promise<{ locking: number; inTransaction: number }> {
    const { rows } = await sql<{ locking: number; inTransaction: number }>`
    select
      (select count(*)::int from pg_locks l join pg_class c on c.oid = l.relation
        where c.relname = 'slack_outbox' and l.mode = 'RowShareLock'
          and l.pid <> pg_backend_pid()
          -- pg_locks is the server's: every test database, copied from one template, has a
          -- slack_outbox of the same oid.
          and l.database = (select oid from pg_database where datname = current_database()))
        as "locking",
      (select count(*)::int from pg_stat_activity
        where datname = current_database() and pid <> pg_backend_pid()
          and state like 'idle in transaction%') as "inTransaction"`.execute(h.db.db);
    return rows[0] ?? { locking: -1, inTransaction: -1 };
  }

  const postsOf = (text: string) =>
    h.slack
      .callsTo("chat.postMessage")
      .filter((c) => c.args.text === text)
      .map((c) => c.failed ?? "ok");

  test("a sweep that Slack asks to wait (429) lets go at once; the thread goes after the wait, in order, once", async () => {
    const thread = await threads.newThread(h.db.db, h.slack);
    await threads.say(h.db.db, thread, "first");
    await threads.say(h.db.db, thread, "second");
    h.slack.failNext("chat.postMessage", { error: "ratelimited", retryAfter: 30 });

    assert.equal(await deliverOutbox(h.baton.deps, { olderThanMs: 0 }), 0, "nothing sent, no wait");
    assert.deepEqual(postsOf("first"), ["ratelimited"]);
    assert.deepEqual(await holders(), { locking: 0, inTransaction: 0 }, "nothing held");
    const [deferred] = await h.db.db
      .selectFrom("slack_outbox")
      .select(sql<number>`extract(epoch from next_attempt_at - clock_timestamp())`.as("inS"))
      .where("task_id", "=", thread.taskId)
      .orderBy("id")
      .execute();
    assert.ok(deferred && deferred.inS > 20 && deferred.inS <= 30, `due in ${deferred?.inS} s`);

    // Before the wait is over, a click's delivery for the task and another replica's sweep send
    // nothing: not the second message past the first, nor the first again.
    assert.equal(await deliverOutbox(h.baton.deps, { taskId: thread.taskId }), 0);
    assert.equal(await deliverOutbox(h.baton.deps, { olderThanMs: 0 }), 0);
    assert.deepEqual(postsOf("first"), ["ratelimited"]);
    assert.deepEqual(postsOf("second"), []);

    // The wait is over (as if 30 s had passed): the next sweep sends both, in order.
    await h.db.db
      .updateTable("slack_outbox")
      .set({ next_attempt_at: sql<Date>`clock_timestamp()` })
      .where("task_id", "=", thread.taskId)
      .where("status", "=", "retry")
      .execute();
    assert.equal(await deliverOutbox(h.baton.deps, { olderThanMs: 0 }), 2);
    assert.deepEqual(threads.threadTexts(h.slack, thread.ts), ["first", "second"]);
    assert.deepEqual(postsOf("first"), ["ratelimited", "ok"]);
    assert.deepEqual(postsOf("second"), ["ok"]);
    const rows = await h.db.db
      .selectFrom("slack_outbox")
      .select(["status", "attempts"])
      .where("task_id", "=", thread.taskId)
      .orderBy("id")
      .execute();
    assert.deepEqual(
      rows,
      [
        { status: "sent", attempts: 0 },
        { status: "sent", attempts: 0 },
      ],
      "a 429 is no failed try: Slack stored nothing",
    );
  });
});

describe("outbox-rate-limit-at-stop", async () => {
  // A run delivering its own thread waits out Slack's 429 (it holds its lease and no row). Once the
  // process is stopping it does not: the runs under way drain, and a Retry-After (30-60 s) sat out
  // then could outlast the platform's grace period, after which the process is killed anyway.

  let h: Harness;
  before(async () => {
    h = await startHarness({ script: () => ({ content: "unused" }) });
  });
  after(async () => {
    await h.close();
  });

  test("a run's delivery that Slack asks to wait once the process is stopping lets go at once; the thread goes after the wait, once", async () => {
    const thread = await threads.newThread(h.db.db, h.slack);
    await threads.say(h.db.db, thread, "first");
    await threads.say(h.db.db, thread, "second");
    // Ten minutes: a delivery that sat it out would not have answered before the checks below.
    h.slack.failNext("chat.postMessage", { error: "ratelimited", retryAfter: 600 });
    const stopping = { ...h.baton.deps, stopping: AbortSignal.abort() };

    const sent = await deliverOutbox(stopping, { taskId: thread.taskId, holdsLease: true });
    assert.equal(sent, 0, "nothing sent, and Slack's wait not sat out");
    const posts = () =>
      h.slack
        .callsTo("chat.postMessage")
        .filter((c) => c.args.thread_ts === thread.ts)
        .map((c) => [c.args.text, c.failed ?? "ok"]);
    assert.deepEqual(posts(), [["first", "ratelimited"]]);
    const outbox = () => outboxWaits(h.db.db, thread.taskId);
    assert.deepEqual(
      await outbox(),
      [
        { status: "retry", waiting: true },
        { status: "pending", waiting: false },
      ],
      "the thread waits in the outbox, its first row due after Slack's wait",
    );

    // The wait is over (as if ten minutes had passed): the next sweep sends both, in order, once.
    await h.db.db
      .updateTable("slack_outbox")
      .set({ next_attempt_at: sql<Date>`clock_timestamp()` })
      .where("task_id", "=", thread.taskId)
      .where("status", "=", "retry")
      .execute();
    assert.equal(await deliverOutbox(h.baton.deps, { olderThanMs: 0 }), 2);
    assert.deepEqual(posts(), [
      ["first", "ratelimited"],
      ["first", "ok"],
      ["second", "ok"],
    ]);
    assert.deepEqual(threads.threadTexts(h.slack, thread.ts), ["first", "second"]);
  });
});

describe("rate-limit-keeps-lease", async () => {
  // A run that delivers its thread through the locked path (a post failed) and is asked by Slack to
  // wait (a 429) waits it out for its own thread. It keeps its lease meanwhile: a lease left to run
  // out would have the task taken over by another run, and the audit would say this run died.

  let h: Harness | undefined;
  after(async () => {
    await h?.close();
  });

  test("a run waiting out Slack's 429 keeps its lease: no other run takes the task, no lost try", async () => {
    const LEASE_MS = 1_000;
    h = await startHarness({ script: scriptByAgent(whereIsMyOrderScript()), leaseMs: LEASE_MS });
    const harness = h;
    // The first post fails, so the run delivers through the outbox, which first looks in the thread
    // for it: Slack rate-limits that look for three lease lengths.
    harness.slack.failNext("chat.postMessage", { error: "internal_error" });
    harness.slack.failNext("conversations.replies", { error: "ratelimited", retryAfter: 3 });
    const { ts } = await harness.mention("where is order 1042?");
    await harness.slack.waitForCall("conversations.replies", (c) => c.failed !== undefined);
    const task = await taskOfThread(harness.db.db, ts);
    assert.ok(task);

    // Past the lease's length, while the run waits: its lease is still its own, and running.
    await sleep(LEASE_MS * 1.7);
    const leased = await harness.db.db
      .selectFrom("tasks")
      .select((eb) => ["lease_owner", eb("lease_until", ">", new Date()).as("live")])
      .where("id", "=", task.id)
      .executeTakeFirstOrThrow();
    assert.ok(leased.lease_owner, "the run still holds the task");
    assert.equal(leased.live, true, "its lease was renewed while it waited");

    await harness.until("the task to finish", () => finishedTask(harness.db.db, ts));
    assert.deepEqual(await auditKinds(harness.db.db, task.id, "attempt_failed"), [], "no try lost");
    const names = harness.slack
      .messagesIn(CHANNEL, ts)
      .slice(1)
      .map((m) => m.username);
    assert.deepEqual(names, [
      "Customer Service",
      "Fulfillment",
      "Inventory",
      "Fulfillment",
      "Customer Service",
    ]);
  });
});

describe("odd-slack-text", async () => {
  // What people send that is not plain text. A NUL or half an emoji in a message made Postgres refuse
  // it: a 500 on Slack's delivery and each retry, and the message lost. A file shared with no comment
  // reached the agent as an empty message, a paid turn with nothing to read.

  let h: Harness;
  before(async () => {
    const script: Script = () => ({ content: "Noted." });
    h = await startHarness({ script });
  });
  after(async () => {
    await h.close();
  });

  for (const [name, odd] of [
    ["a NUL", "\u0000"],
    ["half an emoji", "\ud83d"],
  ] as const) {
    test(`a mention holding ${name} is accepted once, and its text kept without it`, async () => {
      const { ts } = h.slack.addMessage({ channel: CHANNEL, user: REQUESTER, text: "order 1042?" });
      const statuses: number[] = [];
      for (let retry = 0; retry <= 1; retry++) {
        const options = { ts, eventId: `EvOdd${name}`, ...(retry && { retryNum: retry }) };
        statuses.push((await h.mention(`where is order 1042${odd}?`, options)).status);
      }
      assert.deepEqual(statuses, [200, 200]);
      const task = await h.until("the answer", () => taskWithStatus(h.db.db, ts, "done"));
      assert.ok(task.request_text.isWellFormed() && !task.request_text.includes("\u0000"));
      assert.match(task.request_text, /^where is order 1042.?\?$/);
    });
  }

  test("a file shared in a task's thread with no comment reaches the agent by its name", async () => {
    const { ts } = await h.mention("my order 1042 arrived damaged");
    await h.until("the first answer", () => taskWithStatus(h.db.db, ts, "done"));
    const before = h.model.requests.length;
    const { ts: fileTs } = h.slack.addMessage({
      channel: CHANNEL,
      user: REQUESTER,
      text: "",
      threadTs: ts,
    });
    const res = await deliverEvent(h.endpoint, SIGNING_SECRET, {
      ...messageEvent({ user: REQUESTER, channel: CHANNEL, text: "", ts: fileTs, threadTs: ts }),
      subtype: "file_share",
      files: [{ id: "F0PHOTO", name: "damaged-box.jpg", mimetype: "image/jpeg" }],
    });
    assert.equal(res.status, 200);
    const request = await h.until("the agent's next turn", async () => h.model.requests[before]);
    const last = request.body.messages.at(-1);
    assert.equal(last?.role, "user");
    assert.match(String(last?.content), /\[shared a file: damaged-box\.jpg\]/);
    assert.ok(await taskInThread(h.db.db, ts));
  });
});

describe("status-escaping", async () => {
  // The customer's message becomes the task's title; Slack sends links and broadcasts as <...> tokens.
  const REQUEST =
    "<https://evil.example/login|Verify your card here> <!channel> where is order 1042?";

  let h: Harness;
  before(async () => {
    h = await startHarness({ script: scriptByAgent(whereIsMyOrderScript()) });
    const { ts } = await h.mention(REQUEST);
    await h.until("flow 1 to finish", () => finishedTask(h.db.db, ts));
  });
  after(async () => {
    await h.close();
  });

  test("/baton status shows the customer's text as text: no live link, no broadcast", async () => {
    const res = await deliverCommand(h.endpoint, SIGNING_SECRET, {
      command: "/baton",
      text: "status 1042",
      user_id: "U0OPS",
      channel_id: CHANNEL,
      response_url: h.slack.responseUrl,
    });
    assert.equal(res.status, 200);
    const reply = await h.until("the answer", async () => h.slack.callsTo("response_url")[0]);
    const text = String(reply.args.text);
    assert.match(text, /Verify your card here/);
    assert.ok(!text.includes("<https://evil.example"), `a live link in: ${text}`);
    assert.ok(!text.includes("<!channel>"), `a broadcast in: ${text}`);
  });
});

describe("bot-identity", async () => {
  let h: Harness | undefined;
  after(async () => {
    await h?.close();
  });

  test("a failed look-up of the bot's own id fails that event only: Slack's retry is accepted", async () => {
    const harness = await startHarness({ script: () => ({ content: "On its way." }) });
    h = harness;
    harness.slack.failNext("auth.test", { error: "internal_error" });
    const first = await harness.mention("where is order 1042?", { eventId: "EvBOTID1" });
    assert.equal(first.status, 500, "the event failed, so Slack delivers it again");
    const retry = await harness.mention("where is order 1042?", {
      eventId: "EvBOTID1",
      retryNum: 1,
      ts: first.ts,
    });
    assert.equal(retry.status, 200);
    const later = await harness.mention("and order 1077?", { eventId: "EvBOTID2" });
    assert.equal(later.status, 200);
    const tasks = await harness.db.db.selectFrom("tasks").select("thread_ts").execute();
    assert.deepEqual(tasks.map((t) => t.thread_ts).sort(), [first.ts, later.ts].sort());
  });
});

describe("form-open-failure", async () => {
  // Reject opens a form for the reason once Slack has the click's answer. A form Slack does not open
  // (its trigger ran out) decided nothing, and the person is told so instead of seeing nothing.

  let h: Harness;
  before(async () => {
    h = await startHarness({ script: scriptByAgent(directRefundScript()) });
  });
  after(async () => {
    await h.close();
  });

  test("a Reject whose form does not open tells the approver that nothing was done", async () => {
    const { ts } = await h.mention("billing: please refund order 1077, the lamp came back");
    const approval = await waitForApprovalCard(h);
    h.slack.failNext("views.open", { error: "expired_trigger_id" });
    await h.clickCard("U0LEE", APPROVAL_REJECT, approval, ts);
    const told = await h.until("the approver to be told", async () =>
      h.slack.callsTo("chat.postEphemeral").find((c) => c.args.user === "U0LEE"),
    );
    assert.match(String(told.args.text), /nothing was done/);
    const still = await h.db.db
      .selectFrom("approvals")
      .select("status")
      .where("id", "=", approval.id)
      .executeTakeFirstOrThrow();
    assert.equal(still.status, "pending");
  });
});

describe("bidi-controls", async () => {
  // U+202E RIGHT-TO-LEFT OVERRIDE reverses the display of everything after it on the line (until a
  // U+202C or the paragraph's end): a customer's title followed by Baton's own words can make them
  // read backwards, or spoof them. U+2066..U+2069 and U+200E/F act alike.
  const RLO = "\u202E";
  const BIDI = /[\u202A-\u202E\u2066-\u2069]/;

  test("clip and plainText drop bidi embeddings, overrides and isolates", () => {
    assert.ok(!BIDI.test(clip(`order 1042 ${RLO}gnp.exe`, 100)), "clip kept U+202E");
    assert.ok(!BIDI.test(plainText(`order 1042 ${RLO}gnp.exe`, 100)), "plainText kept U+202E");
  });

  test("a digest row: a title with U+202E cannot reverse the owner and date after it", () => {
    const at = new Date("2025-03-04T10:42:00Z").toISOString();
    const message = digestMessage({
      audience: "channel",
      asOf: at,
      staleAfterMs: 86_400_000,
      approvalStaleAfterMs: 3_600_000,
      staleTasks: [
        {
          title: `where is 1042 ${RLO}`,
          owner: { kind: "human", id: "U0ANN" },
          lastActivityAt: at,
        },
      ],
      staleApprovals: [],
      failedTasks: [],
    });
    const row = JSON.stringify(message.blocks).match(/"text":"(\*where is 1042[^"]*)"/)?.[1] ?? "";
    assert.ok(!BIDI.test(row), `the row carries an unterminated override before <@U0ANN>: ${row}`);
  });

  let h: Harness;
  before(async () => {
    h = await startHarness({ script: scriptByAgent(whereIsMyOrderScript()) });
  });
  after(async () => {
    await h.close();
  });

  test("/baton status: a title with U+202E cannot reverse 'owned by …'", async () => {
    const { ts } = await h.mention(`${RLO}where is order 1042?`);
    await h.until("flow 1 to finish", () => finishedTask(h.db.db, ts), 20_000);
    await deliverCommand(h.endpoint, SIGNING_SECRET, {
      command: "/baton",
      text: "status 1042",
      user_id: "U0OPS",
      channel_id: CHANNEL,
      response_url: h.slack.responseUrl,
    });
    const reply = await h.until("the answer", async () => h.slack.callsTo("response_url")[0]);
    const first = String(reply.args.text).split("\n")[0] ?? "";
    assert.ok(
      !BIDI.test(first),
      `status line carries an unterminated override: ${JSON.stringify(first)}`,
    );
  });
});
