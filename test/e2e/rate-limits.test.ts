import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { sql } from "kysely";
import { loadAgentsFile } from "../../src/config/agents-file.ts";
import type { AgentsFile, RateLimits } from "../../src/config/agents-schema.ts";
import type { Db } from "../../src/db/database.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { CATCH_UP_DEAD_LETTERS, CATCH_UP_QUEUE } from "../../src/jobs/queue.ts";
import { createLogger } from "../../src/log.ts";
import { tellRepliesUnread, UNREAD_REPLIES_NOTICE } from "../../src/runtime/catch-ups.ts";
import { runMaintenance } from "../../src/runtime/maintenance.ts";
import { APPROVAL_APPROVE, APPROVAL_REJECT } from "../../src/slack/views/approval-card.ts";
import {
  REJECT_REASON_ACTION,
  REJECT_REASON_BLOCK,
  REJECT_REASON_CALLBACK,
} from "../../src/slack/views/reject-modal.ts";
import { type BatonProcess, spawnBaton } from "../support/baton-process.ts";
import { untilCrash } from "../support/crash-rig.ts";
import { createTestDatabase } from "../support/db.ts";
import {
  CHANNEL,
  freePort,
  type Harness,
  harnessPerTest,
  REQUESTER,
  SIGNING_SECRET,
  startHarness as startOwnHarness,
} from "../support/harness.ts";
import {
  type AgentReply,
  type Script,
  scriptByAgent,
  startModelServer,
} from "../support/model-server.ts";
import { outboxWaits, waitForApprovalCard } from "../support/observe.ts";
import {
  auditKinds,
  directRefundScript,
  finishedTask,
  lastToolMessage,
  refundCall,
  refundsOf,
  settledTask,
  taskOfThread,
  toolCallsOf,
} from "../support/scripts-humans.ts";
import { type SlackEmulator, startSlackEmulator } from "../support/slack-emulator.ts";
import {
  appMentionEvent,
  deliverEvent,
  messageEvent,
  viewSubmissionPayload,
} from "../support/slack-signing.ts";

// policies.rate_limits: a tool's runs across all tasks, and the new tasks one person may start.

const startHarness = harnessPerTest();

const HOUR = 3_600_000;

async function withLimits(rateLimits: Partial<RateLimits>): Promise<AgentsFile> {
  const file = await loadAgentsFile(
    fileURLToPath(new URL("../../agents.yml", import.meta.url)),
    new Set(demoTools.map((t) => t.name)),
  );
  return {
    ...file,
    policies: { ...file.policies, rate_limits: { tools: [], ...rateLimits } },
  };
}

test("a tool past its rate limit is refused in another task, recorded, and the model is told", async () => {
  const refund = { order_id: "1077", amount_usd: 40, reason: "Scratched on arrival" };
  const answer: AgentReply = (request) => ({ content: `Result: ${lastToolMessage(request)}` });
  const call = refundCall(refund);
  const h = await startHarness({
    script: scriptByAgent({ billing: [call, answer, call, answer] }),
    agentsFile: await withLimits({ tools: [{ tool: "issue_refund", max: 1, per: HOUR }] }),
  });

  const first = await h.mention("billing: refund 40 USD on order 1077, it came scratched");
  const firstTask = await h.until("the first refund", () => finishedTask(h.db.db, first.ts));
  const second = await h.mention("billing: refund 40 USD on order 1077 again please", {
    user: "U0SOMEONEELSE",
  });
  const secondTask = await h.until("the second task's answer", () =>
    finishedTask(h.db.db, second.ts),
  );

  assert.equal((await refundsOf(h.db.db)).length, 1, "one refund, from the first task");
  assert.deepEqual(
    (await toolCallsOf(h.db.db, firstTask.id, "issue_refund")).map((c) => c.status),
    ["done"],
  );
  const refused = await toolCallsOf(h.db.db, secondTask.id, "issue_refund");
  assert.deepEqual(
    refused.map((c) => c.status),
    ["rate_limited"],
  );
  const told = h.model.requestsFor("billing").at(-1);
  const toolMessage = told ? lastToolMessage(told.body) : "";
  assert.match(toolMessage, /Not run: issue_refund may run at most once in 1 hour/);
  // Nothing queues the call: the model must not promise the requester it will happen by itself.
  assert.doesNotMatch(toolMessage, /will be done later/);
  assert.match(toolMessage, /nothing will run it later by itself/);
  const [audit] = await auditKinds(h.db.db, secondTask.id, "tool_refused");
  assert.equal((audit?.data as { reason?: string } | undefined)?.reason, "rate_limited");
  const reply = h.slack.messagesIn(CHANNEL, second.ts).at(-1);
  assert.match(String(reply?.text), /Not run/);
});

test("a task stopped by replies over a tool's rate limit does not offer a retry that meets the limit again", async () => {
  const answer: AgentReply = { content: "Refunded." };
  const call = refundCall({ order_id: "1077", amount_usd: 40, reason: "Scratched on arrival" });
  const h = await startHarness({
    script: scriptByAgent({ billing: [call, answer, call, call, call] }),
    agentsFile: await withLimits({ tools: [{ tool: "issue_refund", max: 1, per: HOUR }] }),
  });
  const first = await h.mention("billing: refund 40 USD on order 1077, it came scratched");
  await h.until("the first refund", () => finishedTask(h.db.db, first.ts));
  const second = await h.mention("billing: refund 40 USD on order 1077 again please");
  const task = await h.until("the second task to fail", () =>
    settledTask(h.db.db, second.ts, "failed"),
  );
  assert.match(String(task.failure_reason), /past its rate limit/);

  const notice = h.slack
    .messagesIn(CHANNEL, second.ts)
    .find((m) => /task failed/i.test(String(m.text)));
  const words = JSON.stringify([notice?.text, notice?.blocks]);
  // Within the limit's window a reply is refused again: the notice says when, or to ask a person.
  assert.doesNotMatch(words, /Reply in this thread to have Baton try again;/);
  assert.match(words, /at most once in 1 hour/);
  assert.match(words, /<!date\^\d+\^/, "when it can be tried again, in the reader's time");
  assert.match(words, /ask a person to take it/);
});

test("a person past new_tasks_per_person is told and no task starts; replies and others go on", async () => {
  const hello: AgentReply = { content: "Happy to help." };
  const h = await startHarness({
    script: scriptByAgent({ "customer-service": Array.from({ length: 5 }, () => hello) }),
    agentsFile: await withLimits({ new_tasks_per_person: { max: 2, per: HOUR } }),
  });

  const one = await h.mention("where is order 1042?");
  await h.mention("and order 1077?");
  await h.until("both answered", async () =>
    (await h.db.db.selectFrom("tasks").select("id").where("status", "=", "done").execute())
      .length === 2
      ? true
      : undefined,
  );

  // The third arrives as app_mention and as message at once (twin events), then again as Slack's retry.
  const third = h.slack.addMessage({
    channel: CHANNEL,
    user: REQUESTER,
    text: "<@U0BATONBOT> and order 1001?",
  });
  const fields = { user: REQUESTER, channel: CHANNEL, text: third.text ?? "", ts: third.ts };
  const deliveries = await Promise.all([
    deliverEvent(h.endpoint, SIGNING_SECRET, appMentionEvent(fields), { eventId: "EvLIMIT0001" }),
    deliverEvent(h.endpoint, SIGNING_SECRET, messageEvent(fields), { eventId: "EvLIMIT0002" }),
  ]);
  assert.deepEqual(
    deliveries.map((d) => d.status),
    [200, 200],
  );
  const told = await h.until("the person to be told", async () =>
    h.slack.ephemerals.find((e) => e.user === REQUESTER),
  );
  assert.match(String(told.text), /You started 2 tasks in the last hour,/);
  const retry = await deliverEvent(h.endpoint, SIGNING_SECRET, appMentionEvent(fields), {
    eventId: "EvLIMIT0001",
    retryNum: 1,
  });
  assert.equal(retry.status, 200);
  assert.equal(await taskOfThread(h.db.db, third.ts), undefined, "no task for the third");
  assert.equal(
    h.slack.ephemerals.filter((e) => e.user === REQUESTER).length,
    1,
    "told once, whichever events carried the message",
  );

  // A reply in a task's thread is not a new task; someone else may still start one.
  await h.reply(one.ts, "thanks, and the tracking number?");
  const other = await h.mention("is order 1090 shipped?", { user: "U0OTHERPERSON" });
  await h.until("the other person's task", () => finishedTask(h.db.db, other.ts));
  await h.until("the reply answered", async () =>
    h.model.requestsFor("customer-service").length === 4 ? true : undefined,
  );
  const tasks = await h.db.db.selectFrom("tasks").select("requester_id").execute();
  assert.deepEqual(
    tasks.map((t) => t.requester_id).sort(),
    [REQUESTER, REQUESTER, "U0OTHERPERSON"].sort(),
  );
});

test("a read tool with a rate limit is counted in its turn's transaction too", async () => {
  const lookup = (order: string): AgentReply => ({
    toolCalls: [{ name: "lookup_order", arguments: { order_id: order } }],
  });
  const answer: AgentReply = (request) => ({ content: `Last: ${lastToolMessage(request)}` });
  const h = await startHarness({
    script: scriptByAgent({ "customer-service": [lookup("1042"), lookup("1077"), answer] }),
    agentsFile: await withLimits({ tools: [{ tool: "lookup_order", max: 1, per: HOUR }] }),
  });
  const { ts } = await h.mention("where are orders 1042 and 1077?");
  const task = await h.until("the answer", () => finishedTask(h.db.db, ts));
  assert.deepEqual(
    (await toolCallsOf(h.db.db, task.id, "lookup_order")).map((c) => c.status),
    ["done", "rate_limited"],
  );
  assert.match(String(h.slack.messagesIn(CHANNEL, ts).at(-1)?.text), /Not run: lookup_order/);
});

describe("slack-429-in-listeners", () => {
  // Slack's 429 on a call a listener makes. Bolt's client sleeps out the Retry-After inside the
  // call: past a form's trigger_id (3 s, single use), and past the 3 s Slack gives an event's
  // answer (Baton answers once the event is processed), after which Slack sends the event again.

  const publishes = (h: { slack: { callsTo: (m: string) => { failed?: string }[] } }) =>
    h.slack.callsTo("views.publish").map((c) => c.failed);

  test("a Reject whose form Slack rate-limits tells the approver when to click again; the next click decides", async () => {
    const h = await startHarness({ script: scriptByAgent(directRefundScript()) });
    const { ts } = await h.mention("billing: please refund order 1077, the lamp came back");
    const approval = await waitForApprovalCard(h);
    h.slack.failNext("views.open", { error: "ratelimited", retryAfter: 30 });
    await h.clickCard("U0LEE", APPROVAL_REJECT, approval, ts);

    const told = await h.until("the approver to be told", async () =>
      h.slack.callsTo("chat.postEphemeral").find((c) => c.args.user === "U0LEE"),
    );
    assert.equal(
      told.args.text,
      "Slack is busy just now, so nothing was done. Try again in 30 seconds.",
    );
    assert.equal(h.slack.callsTo("views.open").length, 1, "its spent trigger is not tried again");
    const pending = await h.db.db
      .selectFrom("approvals")
      .select("status")
      .where("id", "=", approval.id)
      .executeTakeFirstOrThrow();
    assert.equal(pending.status, "pending", "the click decided nothing");

    // The card's buttons are still there: clicking again opens the form, and its reason decides.
    await h.clickCard("U0LEE", APPROVAL_REJECT, approval, ts);
    const opened = await h.slack.waitForCall("views.open", (c) => c.failed === undefined);
    const view = opened.args.view as { private_metadata: string };
    const submitted = await h.click(
      viewSubmissionPayload({
        userId: "U0LEE",
        callbackId: REJECT_REASON_CALLBACK,
        privateMetadata: view.private_metadata,
        values: { [REJECT_REASON_BLOCK]: { [REJECT_REASON_ACTION]: "Not eligible" } },
      }),
    );
    assert.equal(submitted.status, 200);
    const decided = await h.until("the rejection", () =>
      h.db.db
        .selectFrom("approvals")
        .select(["status", "reason"])
        .where("id", "=", approval.id)
        .where("status", "=", "rejected")
        .executeTakeFirst(),
    );
    assert.equal(decided.reason, "Not eligible");
  });

  test("App Home that Slack rate-limits is not waited for: logged, and published at the next opening", async () => {
    const lines: Record<string, unknown>[] = [];
    const h = await startHarness({
      script: async () => ({ content: "Happy to help." }),
      log: createLogger({
        level: "warn",
        destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
      }),
    });
    const opened = { type: "app_home_opened", user: REQUESTER, tab: "home" };
    h.slack.failNext("views.publish", { error: "ratelimited", retryAfter: 10 });

    const first = await deliverEvent(h.endpoint, SIGNING_SECRET, opened as never);
    assert.equal(first.status, 200, "Slack need not send the event again");
    assert.deepEqual(publishes(h), ["ratelimited"], "answered without waiting out the 429");
    assert.ok(
      lines.some((l) => /App Home not refreshed for U0REQUESTER/.test(String(l.msg))),
      JSON.stringify(lines),
    );

    const second = await deliverEvent(h.endpoint, SIGNING_SECRET, opened as never);
    assert.equal(second.status, 200);
    assert.deepEqual(publishes(h), ["ratelimited", undefined]);
    assert.ok(h.slack.homeViews.get(REQUESTER), "the Home is published");
  });

  // A late mention's thread, read after Slack's 429 (see the late-mention tests in durability).
  const answerOnceTold: Script = async (request) => ({
    content: JSON.stringify(request.messages).includes("order 1078")
      ? "Order 1078 ships tomorrow."
      : "Which order is it?",
  });
  const replyReads = (slack: SlackEmulator) =>
    slack.callsTo("conversations.replies").map((c) => c.failed);
  /**
   * The mention's catch-up jobs (or, with `queue`, their dead letters), oldest first, and how long
   * after its sending each was due.
   */
  const catchUpJobs = async (db: Db, mentionTs: string, queue = CATCH_UP_QUEUE) => {
    const { rows } = await sql<{ state: string; retry_count: number; deferred_s: number }>`
      select state, retry_count, extract(epoch from start_after - created_on)::float8 as deferred_s
      from pgboss.job where name = ${queue} and data->'thread'->>'after' = ${mentionTs}
      order by created_on`.execute(db);
    return rows;
  };
  /**
   * Makes the mention's catch-up job waiting in `state` due now, as when Slack's wait or the job's
   * backoff is over. `ifItFails`: that try is its last, or its retry waits until the test says.
   */
  async function runCatchUpNow(
    db: Db,
    mentionTs: string,
    state: "created" | "retry",
    ifItFails?: "dead letter" | "retry when told",
  ): Promise<void> {
    const last = ifItFails === "dead letter";
    const held = ifItFails === "retry when told";
    // A job tried before counts its next try as it starts.
    const result = await sql`
      update pgboss.job set start_after = now(),
        retry_count = case when ${last} then retry_limit - (started_on is not null)::int
          else retry_count end,
        retry_backoff = retry_backoff and not ${held},
        retry_delay = case when ${held} then 3600 else retry_delay end
      where name = ${CATCH_UP_QUEUE} and data->'thread'->>'after' = ${mentionTs}
        and state = ${state}`.execute(db);
    assert.equal(result.numAffectedRows, 1n, `one catch-up job in ${state}`);
  }
  /** Whether the mention's catch-up has `count` dead letters, each handled. */
  const deadLettersHandled = (db: Db, mentionTs: string, count: number) => async () => {
    const letters = await catchUpJobs(db, mentionTs, CATCH_UP_DEAD_LETTERS);
    return letters.length === count && letters.every((l) => l.state === "completed");
  };
  /** The notices for the thread that its earlier replies were not read, as the outbox holds them. */
  const unreadNotices = (db: Db, ts: string) =>
    db
      .selectFrom("slack_outbox")
      .select(["task_id", "method", "status"])
      .where(sql<string>`payload->'intent'->>'text'`, "=", UNREAD_REPLIES_NOTICE)
      .where(sql<string>`payload->'intent'->>'threadTs'`, "=", ts)
      .execute();
  const answered = (slack: SlackEmulator, ts: string) => async () =>
    slack.messagesIn(CHANNEL, ts).some((m) => m.text === "Order 1078 ships tomorrow.")
      ? true
      : undefined;
  const inputsOf = async (db: Db, ts: string) => {
    const task = await taskOfThread(db, ts);
    assert.ok(task);
    const rows = await db
      .selectFrom("task_inputs")
      .select("text")
      .where("task_id", "=", task.id)
      .execute();
    return rows.map((r) => r.text);
  };
  const EARLY_REPLY = "it is order 1078";
  /**
   * A mention in Slack whose thread's `replies` reach Baton before it does, and are passed over
   * then, there being no task yet. The mention's ts.
   */
  async function threadWithEarlyReplies(h: Harness, replies = [EARLY_REPLY]): Promise<string> {
    const { ts } = h.slack.addMessage({
      channel: CHANNEL,
      user: REQUESTER,
      text: "<@U0BATONBOT> where is my order?",
    });
    for (const text of replies) assert.equal((await h.reply(ts, text)).status, 200);
    return ts;
  }
  /** The mention reaches Baton late: Slack's `retryNum`-th delivery of the one event. */
  const mentionLate = (h: Harness, ts: string, retryNum = 1) =>
    h.mention("where is my order?", { ts, retryNum, eventId: `EvLATE${ts}` });

  test("a late mention whose thread Slack rate-limits is answered at once, and the thread read by a job after the wait", async () => {
    const h = await startHarness({ script: answerOnceTold });
    const ts = await threadWithEarlyReplies(h);
    h.slack.failNext("conversations.replies", { error: "ratelimited", retryAfter: 1 });

    const late = await mentionLate(h, ts);
    assert.equal(late.status, 200, "the mention is stored: Slack need not send it again");
    assert.deepEqual(replyReads(h.slack), ["ratelimited"], "answered without waiting out the 429");
    const queued = await catchUpJobs(h.db.db, ts);
    assert.equal(queued.length, 1, "the read waits in the job queue");
    assert.ok(Number(queued[0]?.deferred_s) >= 1, "due after Slack's Retry-After");

    await h.until("the answer that read the reply", answered(h.slack, ts));
    assert.deepEqual(await inputsOf(h.db.db, ts), [EARLY_REPLY], "the reply is read once");
    assert.deepEqual(replyReads(h.slack), ["ratelimited", undefined]);
    await h.until("the job to complete", async () => {
      const jobs = await catchUpJobs(h.db.db, ts);
      return jobs.length === 1 && jobs[0]?.state === "completed";
    });
  });

  test("a catch-up job Slack rate-limits again waits again, as a job, and reads the thread", async () => {
    const h = await startHarness({ script: answerOnceTold });
    const ts = await threadWithEarlyReplies(h);
    h.slack.failNext("conversations.replies", { error: "ratelimited", retryAfter: 1 }, 2);

    assert.equal((await mentionLate(h, ts)).status, 200);
    await h.until("the answer that read the reply", answered(h.slack, ts));
    assert.deepEqual(replyReads(h.slack), ["ratelimited", "ratelimited", undefined]);
    assert.deepEqual(await inputsOf(h.db.db, ts), [EARLY_REPLY]);
    const jobs = await h.until("both jobs to complete", async () => {
      const rows = await catchUpJobs(h.db.db, ts);
      return rows.every((j) => j.state === "completed") ? rows : undefined;
    });
    assert.deepEqual(
      jobs.map((j) => [j.retry_count, j.deferred_s >= 1]),
      [
        [0, true],
        [0, true],
      ],
      "the 429 in the job queued the next read after the wait, and counted no failure",
    );
  });

  test("a thread read that Slack pauses on its second page goes on after the wait from its last reply", async () => {
    const h = await startHarness({ script: answerOnceTold });
    // More replies than a page of conversations.replies holds for most apps (15, the parent first).
    const texts = Array.from({ length: 16 }, (_, i) => `detail ${i + 1}`);
    texts.push(EARLY_REPLY);
    const ts = await threadWithEarlyReplies(h, texts);
    const before = replyReads(h.slack).length;
    // The first page is read; Slack asks to wait before the second, as it does after one call.
    const firstPage = h.slack.holdAnswer("conversations.replies");
    const late = mentionLate(h, ts);
    await firstPage.arrived;
    h.slack.failNext("conversations.replies", { error: "ratelimited", retryAfter: 1 });
    firstPage.release();
    assert.equal((await late).status, 200);

    await h.until("the answer that read every reply", answered(h.slack, ts));
    assert.deepEqual(await inputsOf(h.db.db, ts), texts, "every reply read, once, in order");
    const reads = h.slack.callsTo("conversations.replies").slice(before);
    assert.deepEqual(
      reads.map((c) => c.failed),
      [undefined, "ratelimited", undefined],
    );
    // The job's read starts after the last reply of the first page, not at the mention again.
    const lastOfPageOne = h.slack.messagesIn(CHANNEL, ts).filter((m) => m.ts !== ts)[13];
    assert.equal(reads[2]?.args.oldest, lastOfPageOne?.ts);
  });

  test("a restart during Slack's wait neither waits it out nor loses the read", async () => {
    const h = await startHarness({ script: answerOnceTold });
    // The Baton that takes Slack's events runs no workers here: whatever reads the thread after
    // the wait cannot be its own job, run before it stops.
    await h.restart({ workers: false });
    const ts = await threadWithEarlyReplies(h);
    h.slack.failNext("conversations.replies", { error: "ratelimited", retryAfter: 1 });
    assert.equal((await mentionLate(h, ts)).status, 200);

    await h.restart();
    assert.deepEqual(replyReads(h.slack), ["ratelimited"], "the stop did not sit out the wait");
    await h.until("the answer that read the reply", answered(h.slack, ts));
    assert.deepEqual(await inputsOf(h.db.db, ts), [EARLY_REPLY], "the reply is read once");
  });

  test("a Baton killed during Slack's wait: the next one reads the thread", async () => {
    const db = await createTestDatabase();
    const slack = await startSlackEmulator({ users: [{ id: REQUESTER, name: "dana" }] });
    const model = await startModelServer(answerOnceTold);
    const port = await freePort();
    const endpoint = `http://127.0.0.1:${port}/slack/events`;
    const batons: BatonProcess[] = [];
    const spawn = async () => {
      // A short lease: the killed one's task is taken over within the test.
      const baton = await spawnBaton({
        databaseUrl: db.url,
        slackApiUrl: slack.url,
        openaiBaseUrl: model.baseURL,
        port,
        signingSecret: SIGNING_SECRET,
        leaseMs: 1_500,
      });
      batons.push(baton);
      return baton;
    };
    try {
      const first = await spawn();
      const question = "<@U0BATONBOT> where is my order?";
      const { ts } = slack.addMessage({ channel: CHANNEL, user: REQUESTER, text: question });
      const said = { channel: CHANNEL, user: REQUESTER, text: EARLY_REPLY, threadTs: ts };
      const { ts: replyTs } = slack.addMessage(said);
      const replied = await deliverEvent(
        endpoint,
        SIGNING_SECRET,
        messageEvent({ ...said, ts: replyTs }),
      );
      assert.equal(replied.status, 200);
      slack.failNext("conversations.replies", { error: "ratelimited", retryAfter: 3 });
      const mention = appMentionEvent({ user: REQUESTER, channel: CHANNEL, text: question, ts });
      const late = await deliverEvent(endpoint, SIGNING_SECRET, mention, { retryNum: 1 });
      assert.equal(late.status, 200);

      await first.kill();
      await spawn();
      await untilCrash("the answer that read the reply", answered(slack, ts));
      assert.deepEqual(await inputsOf(db.db, ts), [EARLY_REPLY], "the reply is read once");
    } finally {
      for (const baton of batons) await baton.stop();
      await Promise.all([slack.close(), model.close()]);
      await db.drop();
    }
  });

  /** Delivers the mention late, its read paused by Slack long enough that the test says when its job runs. */
  async function mentionLatePaused(h: Harness, ts: string, retryNum = 1): Promise<void> {
    h.slack.failNext("conversations.replies", { error: "ratelimited", retryAfter: 600 });
    assert.equal((await mentionLate(h, ts, retryNum)).status, 200);
  }
  /** Slack fails the next read of a thread, for a moment (retried, unlike a refusal). */
  const failNextRead = (h: Harness) =>
    h.slack.failNext("conversations.replies", { error: "internal_error" });
  /** A late mention whose catch-up job failed a try, and waits to retry until the test says. */
  async function catchUpWaitingToRetry(h: Harness): Promise<string> {
    const ts = await threadWithEarlyReplies(h);
    await mentionLatePaused(h, ts);
    failNextRead(h);
    await runCatchUpNow(h.db.db, ts, "created", "retry when told");
    await h.until("the job to wait to retry", async () =>
      (await catchUpJobs(h.db.db, ts)).some((j) => j.state === "retry"),
    );
    return ts;
  }

  test("a catch-up that fails its last try tells the thread, once, to write again what its replies said", async () => {
    const h = await startHarness({ script: answerOnceTold });
    const ts = await threadWithEarlyReplies(h);
    await mentionLatePaused(h, ts);
    const task = await h.until("the answer to the mention", () => finishedTask(h.db.db, ts));
    failNextRead(h);
    await runCatchUpNow(h.db.db, ts, "created", "dead letter");

    const told = await h.until("the thread to be told", async () =>
      h.slack.messagesIn(CHANNEL, ts).find((m) => m.text === UNREAD_REPLIES_NOTICE),
    );
    const post = h.slack.callsTo("chat.postMessage").find((c) => c.args.text === told.text);
    assert.equal(post?.args.username, undefined, "in Baton's own name, as its other notices");
    // Slack has the notice before its row is marked sent.
    const notices = await h.until("the notice's row to be marked sent", async () => {
      const rows = await unreadNotices(h.db.db, ts);
      return rows.every((r) => r.status === "sent") ? rows : undefined;
    });
    assert.deepEqual(notices, [{ task_id: task.id, method: "notice", status: "sent" }]);
    assert.deepEqual(await inputsOf(h.db.db, ts), []);

    // Slack delivers the mention again, and the job of that delivery fails its last try too.
    await mentionLatePaused(h, ts, 2);
    failNextRead(h);
    await runCatchUpNow(h.db.db, ts, "created", "dead letter");
    await h.until("both dead letters to be handled", deadLettersHandled(h.db.db, ts, 2));
    assert.equal((await unreadNotices(h.db.db, ts)).length, 1, "told once");
    assert.equal(
      h.slack.messagesIn(CHANNEL, ts).filter((m) => m.text === UNREAD_REPLIES_NOTICE).length,
      1,
    );
  });

  test("a redelivery's catch-up that fails beside one waiting to retry is not told as lost: the other reads the thread", async () => {
    const h = await startHarness({ script: answerOnceTold });
    const ts = await catchUpWaitingToRetry(h);
    await mentionLatePaused(h, ts, 2);
    // The second job fails its first try: the stately queue, which keeps one job to retry for a
    // mention, makes it a dead letter at once.
    failNextRead(h);
    await runCatchUpNow(h.db.db, ts, "created");
    await h.until("its dead letter to be handled", deadLettersHandled(h.db.db, ts, 1));
    assert.deepEqual(await unreadNotices(h.db.db, ts), [], "the thread is not told");

    await runCatchUpNow(h.db.db, ts, "retry");
    await h.until("the answer that read the reply", answered(h.slack, ts));
    assert.deepEqual(await inputsOf(h.db.db, ts), [EARLY_REPLY]);
    assert.deepEqual(await unreadNotices(h.db.db, ts), []);
  });

  test("a catch-up due after a redelivery's job read the thread asks Slack nothing, and is not told as lost", async () => {
    const h = await startHarness({ script: answerOnceTold });
    const ts = await catchUpWaitingToRetry(h);
    await mentionLatePaused(h, ts, 2);
    await runCatchUpNow(h.db.db, ts, "created");
    await h.until("the answer that read the reply", answered(h.slack, ts));

    const reads = replyReads(h.slack).length;
    await runCatchUpNow(h.db.db, ts, "retry", "dead letter");
    await h.until("the waiting job to finish", async () =>
      (await catchUpJobs(h.db.db, ts)).every((j) => j.state === "completed") ? true : undefined,
    );
    assert.equal(
      replyReads(h.slack).length,
      reads,
      "the thread was read: Slack is not asked again",
    );
    assert.deepEqual(await catchUpJobs(h.db.db, ts, CATCH_UP_DEAD_LETTERS), []);
    // A job that failed while the other read the thread is not told as lost either.
    const thread = { channel: CHANNEL, threadTs: ts, after: ts };
    await tellRepliesUnread(h.baton.deps, thread, "Slack failed");
    assert.deepEqual(await unreadNotices(h.db.db, ts), [], "the thread is not told");
    assert.deepEqual(await inputsOf(h.db.db, ts), [EARLY_REPLY]);
  });

  test("a person over their task limit is told after Slack has its answer, the notice's 429 waited out", async () => {
    const h = await startHarness({
      script: scriptByAgent({ "customer-service": [{ content: "Happy to help." }] }),
      agentsFile: await withLimits({ new_tasks_per_person: { max: 1, per: HOUR } }),
    });
    const first = await h.mention("where is order 1042?");
    await h.until("the first task", () => finishedTask(h.db.db, first.ts));

    // Slack rate-limits the notice, and answers so only when the test lets it.
    h.slack.failNext("chat.postEphemeral", { error: "ratelimited", retryAfter: 1 });
    const held = h.slack.holdAnswer("chat.postEphemeral");
    let answered: number | undefined;
    void h.mention("and order 1077?").then((r) => {
      answered = r.status;
    });
    try {
      await held.arrived;
      await h.until("Slack's answer to the message, the notice still on its way", async () =>
        answered === undefined ? undefined : true,
      );
    } finally {
      held.release();
    }
    assert.equal(answered, 200);
    const told = await h.until("the person to be told", async () =>
      h.slack.ephemerals.find((e) => e.user === REQUESTER),
    );
    assert.match(String(told.text), /You started 1 task in the last hour,/);
    assert.deepEqual(
      h.slack.callsTo("chat.postEphemeral").map((c) => c.failed),
      ["ratelimited", undefined],
    );
  });

  const noticeRateLimited = (h: Harness) => async () =>
    h.slack.callsTo("chat.postEphemeral").some((c) => c.failed === "ratelimited");

  /**
   * Sets up a notice that Slack rate-limits for 30 s, then stops Baton: the stop must not sit the
   * Retry-After out.
   */
  async function stopDuringRetryAfter(h: Harness, setUp: () => Promise<void>): Promise<void> {
    let closed: Promise<void> | undefined;
    try {
      await setUp();
      await h.until("the notice's 429", noticeRateLimited(h));
      const stopping = h.close();
      closed = stopping;
      // Far below the 30 s Slack asked for, far above a stop's own time.
      const bound = new AbortController();
      const outcome = await Promise.race([
        stopping.then(() => "stopped" as const),
        sleep(10_000, "still waiting" as const, { signal: bound.signal }),
      ]);
      bound.abort();
      assert.equal(outcome, "stopped", "the stop did not sit out Slack's Retry-After");
    } finally {
      await (closed ?? h.close());
    }
  }

  /** The notice was dropped at the stop: not sent again, and logged once, at info. */
  function assertDropped(h: Harness, lines: Record<string, unknown>[], what: string): void {
    assert.deepEqual(
      h.slack.callsTo("chat.postEphemeral").map((c) => c.failed),
      ["ratelimited"],
      "the notice is not sent again",
    );
    const about = lines.filter((l) => String(l.msg).includes(what));
    assert.deepEqual(
      about.map((l) => [l.level, l.msg]),
      [[30, `dropped, the process is stopping: ${what}`]],
      "logged once, at info, as dropped",
    );
  }

  test("a stop during the task-limit notice's Retry-After does not wait it out: the notice is dropped, and logged", async () => {
    const lines: Record<string, unknown>[] = [];
    // Closed by the test itself: the close is what it measures.
    const h = await startOwnHarness({
      script: scriptByAgent({ "customer-service": [{ content: "Happy to help." }] }),
      agentsFile: await withLimits({ new_tasks_per_person: { max: 1, per: HOUR } }),
      log: createLogger({
        level: "info",
        destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
      }),
    });
    await stopDuringRetryAfter(h, async () => {
      const first = await h.mention("where is order 1042?");
      await h.until("the first task", () => finishedTask(h.db.db, first.ts));
      h.slack.failNext("chat.postEphemeral", { error: "ratelimited", retryAfter: 30 });
      assert.equal((await h.mention("and order 1077?")).status, 200);
    });
    assertDropped(h, lines, "tell a person they are over their task limit");
  });

  test("a stop during a refused click's notice's Retry-After does not wait it out: the notice is dropped, and logged", async () => {
    const lines: Record<string, unknown>[] = [];
    // Closed by the test itself: the close is what it measures.
    const h = await startOwnHarness({
      script: scriptByAgent(directRefundScript()),
      log: createLogger({
        level: "info",
        destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
      }),
    });
    await stopDuringRetryAfter(h, async () => {
      const { ts } = await h.mention("billing: please refund order 1077, the lamp came back");
      const approval = await waitForApprovalCard(h);
      h.slack.failNext("chat.postEphemeral", { error: "ratelimited", retryAfter: 30 });
      assert.equal((await h.clickCard("U0RANDOM", APPROVAL_APPROVE, approval, ts)).status, 200);
      await h.until("the notice's 429", noticeRateLimited(h));
      const row = await h.db.db
        .selectFrom("approvals")
        .select("status")
        .where("id", "=", approval.id)
        .executeTakeFirstOrThrow();
      assert.equal(row.status, "pending", "the refused click decided nothing");
    });
    assertDropped(h, lines, "tell the approver");
  });
});

describe("slack-429-in-a-run-at-stop", () => {
  // A run waits out Slack's 429 on its own posts, holding nothing but its thread. At a stop the
  // runs under way drain, and a Retry-After (30-60 s) sat out then could outlast the platform's
  // grace period, after which the process is killed anyway.

  const ANSWER = "Order 1042 left the warehouse yesterday.";

  test("a stop during a run's post's Retry-After does not wait it out: the post stays in the outbox, and the next process sends it once, after the wait", async () => {
    const h = await startHarness({ script: async () => ({ content: ANSWER }) });
    // Ten minutes: a stop that sat it out would have tried the post again before it was over.
    h.slack.failNext("chat.postMessage", { error: "ratelimited", retryAfter: 600 });
    const { ts } = await h.mention("where is order 1042?");
    const posts = () =>
      h.slack
        .callsTo("chat.postMessage")
        .filter((c) => c.args.thread_ts === ts)
        .map((c) => [c.args.text, c.failed ?? "ok"]);
    await h.until("the answer's 429", async () => posts().length > 0);

    await h.restart();
    assert.deepEqual(posts(), [[ANSWER, "ratelimited"]], "the stop did not sit out the wait");
    const task = await taskOfThread(h.db.db, ts);
    assert.ok(task);
    const outbox = () => outboxWaits(h.db.db, task.id);
    assert.deepEqual(
      await outbox(),
      [{ status: "retry", waiting: true }],
      "the answer waits in the outbox until Slack's wait is over",
    );

    // The wait is over (as if ten minutes had passed): the next process's sweep sends it, once.
    await sql`update slack_outbox set created_at = created_at - interval '10 minutes',
      next_attempt_at = clock_timestamp() where task_id = ${task.id}`.execute(h.db.db);
    await runMaintenance(h.baton.deps);
    assert.deepEqual(posts(), [
      [ANSWER, "ratelimited"],
      [ANSWER, "ok"],
    ]);
    assert.deepEqual(await outbox(), [{ status: "sent", waiting: false }]);
    assert.deepEqual(
      h.slack
        .messagesIn(CHANNEL, ts)
        .slice(1)
        .map((m) => m.text),
      [ANSWER],
    );
  });
});
