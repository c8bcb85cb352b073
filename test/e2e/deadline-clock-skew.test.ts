import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { sql } from "kysely";
import type { ChatIntent, Clock } from "../../src/core/ports.ts";
import { databaseNow } from "../../src/db/reports.repository.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { runDigest } from "../../src/runtime/digest.ts";
import { runMaintenance } from "../../src/runtime/maintenance.ts";
import { wakeIfMissed } from "../../src/runtime/missed-runs.ts";
import { deliverOutbox } from "../../src/runtime/outbox.ts";
import { slackDate } from "../../src/slack/mrkdwn.ts";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import { insertOrderTask } from "../support/db.ts";
import { agentsFileWith, type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForEscalationCard } from "../support/observe.ts";
import { newThread, say, threadTexts } from "../support/outbox-threads.ts";
import { recordingChat } from "../support/recording-chat.ts";
import {
  blockTexts,
  escalationScript,
  finishedTask,
  orderReturnScript,
  refundsOf,
  taskOfThread,
} from "../support/scripts-humans.ts";
import { runBaton } from "../support/slash-command.ts";

// Replicas' clocks drift; the database's is the one they share. An approval's or escalation's
// deadline is set and judged by it, so a replica whose own clock is hours off neither expires work
// early nor lets a late click through, and every replica agrees on what is due. So is the time a
// card says a person decided, and what the daily digest calls stale; so are the day a per-day cap
// counts, whether a run still holds a task, whether an outbox row may be in Slack already, and the
// days since an order was delivered.

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** agents.yml: a refund over 100 USD waits 4h for a billing lead, then goes to U0OPSMANAGER. */
const EXPIRES_AFTER = 4 * HOUR;
const FALLBACK = { users: ["U0OPSMANAGER"], groups: [] };

/** This process's clock, off from the database's by `offsetMs`, as a replica's may be. */
function skewed(harness: Harness, offsetMs: number): void {
  const clock: Clock = { now: () => new Date(Date.now() + offsetMs) };
  harness.baton.deps.clock = clock;
}

/**
 * This process's system clock (`Date.now()`) off by `offsetMs` while `work` runs, as a replica's may
 * be; the rest of the test keeps the true time.
 */
async function systemClockOff<T>(offsetMs: number, work: () => Promise<T>): Promise<T> {
  const now = Date.now;
  Date.now = () => now() + offsetMs;
  try {
    return await work();
  } finally {
    Date.now = now;
  }
}

async function parkedRefund(harness: Harness) {
  const { ts } = await harness.mention("I'd like to return order 1077, please refund me");
  const parked = await harness.until("the refund to wait on its card", async () => {
    const row = await harness.db.db.selectFrom("approvals").selectAll().executeTakeFirst();
    return row?.card_ts ? row : undefined;
  });
  return { ts, parked };
}

const approvalNow = (harness: Harness, id: string) =>
  harness.db.db.selectFrom("approvals").selectAll().where("id", "=", id).executeTakeFirstOrThrow();

test("a replica whose clock runs slow asks for approval: the deadline is the window from the database's now", async () => {
  h = await startHarness({ script: scriptByAgent(orderReturnScript()) });
  const harness = h;
  skewed(harness, -5 * HOUR);
  const { parked } = await parkedRefund(harness);
  assert.equal(parked.expires_at.getTime() - parked.created_at.getTime(), EXPIRES_AFTER);

  // A replica with a right clock sweeps: nothing is due.
  skewed(harness, 0);
  await runMaintenance(harness.baton.deps);
  const still = await approvalNow(harness, parked.id);
  assert.equal(still.status, "pending");
  assert.equal(still.escalated_at, null, "not handed to the fallback hours early");
});

test("a replica whose clock runs fast neither sweeps an approval early nor refuses its click as late", async () => {
  h = await startHarness({ script: scriptByAgent(orderReturnScript()) });
  const harness = h;
  const { ts, parked } = await parkedRefund(harness);
  skewed(harness, EXPIRES_AFTER + HOUR);

  await runMaintenance(harness.baton.deps);
  const swept = await approvalNow(harness, parked.id);
  assert.equal(swept.status, "pending");
  assert.equal(swept.escalated_at, null, "its deadline is hours away by the database's clock");

  await harness.clickCard("U0LEE", APPROVAL_APPROVE, parked, ts);
  const task = await harness.until("the task to finish", () => finishedTask(harness.db.db, ts));
  assert.ok(task);
  const decided = await approvalNow(harness, parked.id);
  assert.equal(decided.status, "approved");
  assert.equal(decided.decided_by, "U0LEE");
  assert.equal((await refundsOf(harness.db.db)).length, 1);
});

test("a click past the deadline on a replica whose clock runs slow approves nothing: the approval goes to its fallback", async () => {
  h = await startHarness({ script: scriptByAgent(orderReturnScript()) });
  const harness = h;
  const { ts, parked } = await parkedRefund(harness);
  await harness.db.db
    .updateTable("approvals")
    .set({ expires_at: sql`now() - interval '1 minute'` })
    .where("id", "=", parked.id)
    .execute();
  skewed(harness, -HOUR);

  await harness.clickCard("U0LEE", APPROVAL_APPROVE, parked, ts);
  const told = await harness.until("U0LEE to be told", async () =>
    harness.slack.callsTo("chat.postEphemeral").find((c) => c.args.user === "U0LEE"),
  );
  assert.match(
    String(told.args.text),
    /^This request passed its deadline and went to <@U0OPSMANAGER>/,
  );
  const moved = await approvalNow(harness, parked.id);
  assert.equal(moved.status, "pending");
  assert.deepEqual(moved.approvers, FALLBACK);
  assert.ok(moved.escalated_at);
  // The fallback's window is the first one's (here a minute, the least), from when the database
  // moved it.
  assert.equal(moved.expires_at.getTime() - moved.escalated_at.getTime(), 60_000);
  assert.equal((await refundsOf(harness.db.db)).length, 0);
});

test("an escalation asked on a replica whose clock runs slow is due by the database's clock, and a fast replica's sweep leaves it", async () => {
  h = await startHarness({ script: scriptByAgent(escalationScript()) });
  const harness = h;
  skewed(harness, -5 * HOUR);
  await harness.mention("I was charged twice and I'm furious");
  const escalation = await harness.until("the escalation card", async () => {
    const row = await harness.db.db.selectFrom("escalations").selectAll().executeTakeFirst();
    return row?.card_ts ? row : undefined;
  });
  // agents.yml's support lane: respond_within is the default, 4h.
  assert.equal(escalation.respond_by.getTime() - escalation.created_at.getTime(), 4 * HOUR);

  skewed(harness, 5 * HOUR);
  await runMaintenance(harness.baton.deps);
  const still = await harness.db.db
    .selectFrom("escalations")
    .selectAll()
    .where("id", "=", escalation.id)
    .executeTakeFirstOrThrow();
  assert.equal(still.status, "open");
  assert.equal(still.escalated_at, null, "nobody reminded hours early");
});

test("a replica whose clock runs a day slow takes an escalation over and closes it: its card shows the database's times", async () => {
  h = await startHarness({ script: scriptByAgent(escalationScript()) });
  const harness = h;
  const { ts } = await harness.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(harness);
  skewed(harness, -DAY);
  // agents.yml: support is #support's, and U0SUPPORTLEAD one of its members.
  await harness.clickCard("U0SUPPORTLEAD", ESCALATION_TAKE_OVER, escalation, ts);
  const decidedAt = await harness.until("the escalation to be taken over", async () => {
    const row = await harness.db.db
      .selectFrom("escalations")
      .select("decided_at")
      .where("id", "=", escalation.id)
      .executeTakeFirstOrThrow();
    return row.decided_at ?? undefined;
  });
  assert.ok(decidedAt >= escalation.created_at, "decided after it was asked");
  assert.ok(decidedAt <= (await databaseNow(harness.db.db)));

  const { text } = await runBaton(harness, `done ${escalation.task_id}`, {
    user: "U0SUPPORTLEAD",
    channel: "C0SUPPORT",
  });
  assert.match(text, /^Done: /);
  const closedAt = (await taskOfThread(harness.db.db, ts))?.closed_at;
  assert.ok(closedAt);
  const card = await harness.until("the card to show the task done", async () =>
    harness.slack
      .callsTo("chat.update")
      .find((c) => c.args.ts === escalation.card_ts && /marked done by/.test(blockTexts(c).join())),
  );
  const shown = blockTexts(card).join("\n");
  assert.ok(shown.includes(`Taken over by <@U0SUPPORTLEAD> ${slackDate(decidedAt)}`), shown);
  assert.ok(shown.includes(`marked done by <@U0SUPPORTLEAD> ${slackDate(closedAt)}`), shown);
});

test("a replica whose clock runs days fast sends the digest: what is stale is judged by the database's clock", async () => {
  h = await startHarness({ script: scriptByAgent({}) });
  const harness = h;
  let n = 0;
  // Touched by the database's clock, as Baton touches them: agents.yml's stale_after is 24h.
  for (const [title, idle] of [
    ["idle a day and an hour", "25 hours"],
    ["idle an hour", "1 hour"],
  ] as const)
    await harness.db.db
      .insertInto("tasks")
      .values({
        channel_id: "C0OPS",
        thread_ts: `1736000000.00000${++n}`,
        requester_id: "U0DANA",
        title,
        request_text: title,
        status: "waiting_human",
        owner_kind: "human",
        owner_id: "U0ANN",
        handback_stack: "[]",
        facts: "{}",
        cost_usd: 0,
        last_activity_at: sql<Date>`now() - ${idle}::interval`,
      })
      .execute();
  skewed(harness, 2 * DAY);

  const { chat, sent } = recordingChat(harness.baton.deps.chat.threadLink);
  const before = await databaseNow(harness.db.db);
  // The replica's runtime deps, its own clock among them.
  await runDigest(
    { ...harness.baton.deps, agentsFile: harness.agentsFile, chat, threadLink: chat.threadLink },
    new Date(),
    "replica-fast",
  );
  const after = await databaseNow(harness.db.db);
  const digest = sent.find((i) => i.kind === "digest")?.digest;
  assert.ok(digest);
  assert.deepEqual(
    digest.staleTasks.map((t) => t.title),
    ["idle a day and an hour"],
  );
  const asOf = new Date(digest.asOf);
  assert.ok(before <= asOf && asOf <= after, `as of ${digest.asOf}, by the database's clock`);
});

test("a replica whose clock runs a day fast counts the per-day cap over the database's day: today's spend stops the task", async () => {
  h = await startHarness({
    script: scriptByAgent({ "customer-service": [{ content: "Order 1042 is on its way." }] }),
    agentsFile: agentsFileWith([
      '    icon: ":speech_balloon:"\n',
      '    icon: ":speech_balloon:"\n    caps: { usd_per_day: 1 }\n',
    ]),
  });
  const harness = h;
  // Customer Service spent 5 USD today, by the database's clock, on an earlier task.
  const earlier = await insertOrderTask(harness.db.db, "1736000000.000009");
  await harness.db.db
    .insertInto("model_calls")
    .values({
      task_id: earlier.id,
      step_no: 1,
      agent_id: "customer-service",
      model: "gpt-4o-mini",
      prompt_tokens: 1_000_000,
      completion_tokens: 0,
      cost_usd: 5,
      latency_ms: 10,
      request_chars: 4_000_000,
      outcome: "final",
    })
    .execute();
  skewed(harness, DAY);

  const { ts } = await harness.mention("where is order 1042?");
  const task = await harness.until("the task to stop or answer", async () => {
    const row = await taskOfThread(harness.db.db, ts);
    return row && row.status !== "active" ? row : undefined;
  });
  assert.equal(task.status, "waiting_human", "stopped and sent to a person, not answered");
  assert.equal(harness.model.requests.length, 0, "no model call past the day's cap");
});

test("whether a run still holds a task is judged by the database's clock when a reply may have been missed", async () => {
  h = await startHarness({ script: scriptByAgent({}) });
  const harness = h;
  const queued: string[] = [];
  /** The replica's runtime deps, its clock off by `offsetMs`; the jobs it queues are recorded. */
  const replica = (offsetMs: number) => {
    skewed(harness, offsetMs);
    const { deps } = harness.baton;
    return {
      ...deps,
      queue: {
        ...deps.queue,
        enqueue: async (_executor: unknown, taskId: string) => {
          queued.push(taskId);
          return "job";
        },
      },
    };
  };
  const taskWith = async (thread: string, status: string, leaseUntil: string) => {
    const task = await insertOrderTask(harness.db.db, thread);
    await harness.db.db
      .updateTable("tasks")
      .set({
        status,
        lease_owner: "run/1",
        lease_until: sql<Date>`now() + ${leaseUntil}::interval`,
      })
      .where("id", "=", task.id)
      .execute();
    // A reply came that no run has read.
    await harness.db.db
      .insertInto("task_inputs")
      .values({ task_id: task.id, author_id: "U0DANA", text: "any news?" })
      .execute();
    return task.id;
  };
  // A run answered, and holds the task a little longer to post its answer and read the reply.
  const answering = await taskWith("1736000000.000011", "done", "1 minute");
  // A run died: its lease ran out a minute ago, and nothing reads the reply.
  const dead = await taskWith("1736000000.000012", "active", "-1 minute");

  await wakeIfMissed(replica(HOUR), answering);
  const left = await taskOfThread(harness.db.db, "1736000000.000011");
  assert.equal(left?.status, "done", "a live run's task is not opened again under it");
  await wakeIfMissed(replica(-HOUR), dead);
  assert.deepEqual(queued, [dead], "only the dead run's task gets a run");
});

test("a replica whose clock runs slow delivers an outbox row its writer left: one written a minute ago may be in Slack already", async () => {
  h = await startHarness({ script: scriptByAgent({}) });
  const harness = h;
  const thread = await newThread(harness.db.db, harness.slack);
  await say(harness.db.db, thread, "Your order 1042 left the warehouse today.");
  const row = await harness.db.db
    .selectFrom("slack_outbox")
    .select(["id", "payload"])
    .where("task_id", "=", thread.taskId)
    .executeTakeFirstOrThrow();
  // Its writer posted it, and died before marking it sent, a minute ago by the database's clock.
  const { intent } = row.payload as { intent: ChatIntent };
  const posted = await harness.baton.deps.chat.deliver(intent, row.id);
  await harness.db.db
    .updateTable("slack_outbox")
    .set({ created_at: sql<Date>`now() - interval '1 minute'` })
    .where("id", "=", row.id)
    .execute();

  await systemClockOff(-HOUR, () => deliverOutbox(harness.baton.deps, { taskId: thread.taskId }));
  assert.deepEqual(threadTexts(harness.slack, thread.ts), [
    "Your order 1042 left the warehouse today.",
  ]);
  const marked = await harness.db.db
    .selectFrom("slack_outbox")
    .select(["status", "slack_ts"])
    .where("id", "=", row.id)
    .executeTakeFirstOrThrow();
  assert.deepEqual(marked, { status: "sent", slack_ts: posted.ts });
});

test("a replica whose clock runs slow counts the days since delivery by the database's: past the return window is past it", async () => {
  h = await startHarness({ script: scriptByAgent({}) });
  const harness = h;
  await harness.db.db
    .updateTable("orders")
    .set({ delivered_at: sql<Date>`now() - interval '31 days 1 hour'` })
    .where("id", "=", "1077")
    .execute();
  const tool = demoTools.find((t) => t.name === "check_return_eligibility");
  assert.ok(tool);
  const ctx = {
    tx: harness.db.db,
    idempotencyKey: "t:1:0",
    taskId: "t",
    agentId: "customer-service",
  };

  const answer = await systemClockOff(-2 * HOUR, () => tool.run(ctx, { order_id: "1077" }));
  assert.deepEqual(answer, {
    eligible: false,
    total_usd: 149,
    days_since_delivery: 31,
    status: "delivered",
  });
});
