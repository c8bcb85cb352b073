import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sql } from "kysely";
import { createLogger } from "../../src/log.ts";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { insertOrderTask, testServerUrl } from "../support/db.ts";
import {
  CHANNEL,
  type Harness,
  harnessPerTest,
  REQUESTER,
  startHarness,
} from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForApprovalCard } from "../support/observe.ts";
import { resetFlow1Data, whereIsMyOrderScript } from "../support/scripts.ts";
import { finishedTask, orderReturnScript, refundsOf } from "../support/scripts-humans.ts";
import { appMentionEvent, blockActionsPayload, eventEnvelope } from "../support/slack-signing.ts";
import { startPostgresProxy } from "../support/tcp-proxy.ts";

// How events reach Baton over Socket Mode, a stop while a click is acknowledged, and a worker-only
// replica that takes events neither way. One suite per former test file.

describe("socket-mode", async () => {
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
    // A first delivery (retry_attempt 0) is no late mention: its thread is not read.
    assert.equal(h.slack.callsTo("conversations.replies").length, 0);

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
    assert.equal((await fetch(new URL("/readyz", h.endpoint))).status, 200);
    const metrics = await (await fetch(new URL("/metrics", h.endpoint))).text();
    assert.match(metrics, /baton_tasks_started_total/);
  });

  test("Socket Mode: an envelope whose event could not be stored is not acknowledged, and Slack's retry starts the task", async () => {
    const { ts, body } = mentionEnvelope(
      "<@U0BATONBOT> where is order 1042, again?",
      "EvSOCKET0002",
    );
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
      const mention = eventEnvelope(
        appMentionEvent({ user: REQUESTER, channel: CHANNEL, text, ts }),
      );
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
});

describe("socket-stop-ack", async () => {
  // A stop in Socket Mode keeps the connection open until the envelopes under way are acknowledged:
  // otherwise a click decided during the stop would have its acknowledgement go to a closed socket,
  // and Slack would show the person a failure for a decision that stood.
  test("Socket Mode: a click decided during a stop is acknowledged to Slack", async () => {
    const billing = await startHarness({
      script: scriptByAgent(orderReturnScript()),
      socketMode: true,
    });
    let stopped = false;
    try {
      await billing.slack.socketMode.connected();
      const text = "<@U0BATONBOT> I'd like to return order 1077, please refund me";
      const ts = billing.slack.addMessage({ channel: CHANNEL, user: REQUESTER, text }).ts;
      const mention = eventEnvelope(
        appMentionEvent({ user: REQUESTER, channel: CHANNEL, text, ts }),
      );
      assert.ok(await billing.slack.socketMode.send("events_api", mention));
      const approval = await waitForApprovalCard(billing, "the refund to wait on its card");
      const held = billing.slack.holdAnswer("usergroups.users.list");
      const click = blockActionsPayload({
        userId: "U0LEE",
        actionId: APPROVAL_APPROVE,
        value: approval.id,
        channel: CHANNEL,
        messageTs: approval.card_ts ?? "",
        threadTs: ts,
      });
      const acked = billing.slack.socketMode.send("interactive", click, { timeoutMs: 5000 });
      await held.arrived;
      const stopping = billing.baton.stop().then(() => {
        stopped = true;
      });
      await new Promise((resolve) => setTimeout(resolve, 300));
      held.release();
      await stopping;
      const decided = await billing.db.db
        .selectFrom("approvals")
        .select("status")
        .where("id", "=", approval.id)
        .executeTakeFirstOrThrow();
      assert.equal(decided.status, "approved", "the decision committed");
      assert.ok(await acked, "Slack got the click's acknowledgement");
    } finally {
      if (!stopped) await billing.baton.stop();
      await billing.close().catch(() => undefined);
    }
  });
});

describe("socket-reconnect", async () => {
  // Slack refusing the app-level token at a reconnect (revoked, the app uninstalled, Slack's own
  // blip) came back as a rejection nobody listened to, which ends the process as a bug would.
  test("Socket Mode: a reconnect Slack refuses is logged with what to check, never the token, and tried again", async () => {
    const lines: string[] = [];
    const log = createLogger({
      level: "error",
      destination: { write: (line: string) => void lines.push(line) },
    });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => void unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    const h = await startHarness({ script: scriptByAgent({}), socketMode: true, log });
    try {
      await h.slack.socketMode.connected();
      const opens = () => h.slack.callsTo("apps.connections.open").length;
      const before = opens();
      h.slack.failNext("apps.connections.open", { error: "invalid_auth" });
      h.slack.socketMode.drop();
      // The client waits 5 s before its first reconnect, 10 s after a failed one.
      await h.until("the refused reconnect", async () => opens() > before, 10_000);
      await h.until("a reconnect after it", async () => opens() > before + 1, 15_000);
      await h.slack.socketMode.connected();
      const ack = await h.slack.socketMode.send(
        "events_api",
        eventEnvelope(appMentionEvent({ user: REQUESTER, channel: CHANNEL, text: "hi" })),
      );
      assert.ok(ack, "events are taken again once connected");
    } finally {
      process.off("unhandledRejection", onUnhandled);
      await h.close();
    }
    assert.deepEqual(unhandled.map(String), []);
    const refusal = lines.find((line) =>
      line.includes("refused the app-level token (invalid_auth)"),
    );
    assert.ok(refusal, `the refusal is logged: ${lines.join("")}`);
    assert.match(refusal, /SLACK_APP_TOKEN/);
    assert.ok(!lines.join("").includes(h.slack.config.appToken), "never the token");
  });
});

describe("worker-only", async () => {
  // BATON_HTTP=0 makes a worker-only replica: it takes no Slack events, over HTTP or Socket Mode,
  // and works the tasks other replicas accepted. Its counters are its own (per process): PORT
  // serves /metrics, /healthz and /readyz, as on every replica, and nothing of Slack's.

  const startHarness = harnessPerTest();

  for (const socketMode of [false, true])
    test(`a worker-only replica${socketMode ? " with an app-level token" : ""} takes no events, works queued tasks, and is scraped and probed`, async () => {
      const h = await startHarness({
        script: scriptByAgent(whereIsMyOrderScript()),
        socketMode,
        workerOnly: true,
      });
      assert.deepEqual(h.slack.callsTo("apps.connections.open"), [], "no Socket Mode connection");
      const mention = await h.mention("where is order 1042?");
      assert.equal(mention.status, 404, "no /slack/events");
      const health = await fetch(new URL("/healthz", h.endpoint));
      assert.equal(health.status, 200);
      assert.equal(await health.text(), "ok");
      assert.equal((await fetch(new URL("/readyz", h.endpoint))).status, 200);

      // Another replica accepted this task and queued it.
      const task = await insertOrderTask(h.db.db, "1736000000.000100");
      await h.baton.deps.queue.enqueue(h.db.db, task.id);
      await h.until("the task to finish", () => finishedTask(h.db.db, task.thread_ts), 30_000);
      const started = await h.db.db
        .selectFrom("tasks")
        .select("id")
        .where("thread_ts", "=", mention.ts)
        .execute();
      assert.deepEqual(started, [], "the mention started nothing");
      // The run's counters, on the replica that ran it (counted once its end has committed).
      await h.until("the answered task on /metrics", async () => {
        const res = await fetch(new URL("/metrics", h.endpoint));
        assert.equal(res.status, 200);
        return /^baton_tasks_finished_total\{outcome="answered"\} 1$/m.test(await res.text());
      });
    });
});

describe("worker-only-readiness", async () => {
  // Ready as the other replicas are: while its database answers.

  test("a worker-only replica is not ready while its database is away, and still alive", async () => {
    const proxy = await startPostgresProxy(await testServerUrl());
    const h = await startHarness({
      script: scriptByAgent(whereIsMyOrderScript()),
      workerOnly: true,
      databaseUrl: proxy.urlOf,
    }).catch(async (error: unknown) => {
      await proxy.close();
      throw error;
    });
    try {
      const ready = () => fetch(new URL("/readyz", h.endpoint));
      assert.equal((await ready()).status, 200);
      proxy.cut();
      const away = await ready();
      assert.equal(away.status, 503, "not ready while its database is away");
      assert.equal(await away.text(), "the database does not answer");
      assert.equal((await fetch(new URL("/healthz", h.endpoint))).status, 200, "but alive");
      proxy.restore();
      // A pooled connection the outage broke fails once before it is replaced: ready again soon.
      await h.until("ready again", async () => (await ready()).status === 200);
    } finally {
      // Closed through the proxy, then the proxy.
      proxy.restore();
      await h.close();
      await proxy.close();
    }
  });
});
