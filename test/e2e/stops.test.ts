import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sql } from "kysely";
import type { ToolDefinition } from "../../src/core/tools/tool.ts";
import { agentActivity } from "../../src/db/agent-activity.repository.ts";
import * as approvalsDb from "../../src/db/approvals.repository.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { ConfigError } from "../../src/errors.ts";
import { createLogger } from "../../src/log.ts";
import { resumeAfterDecision } from "../../src/runtime/approval-deadline.ts";
import { markDeadLettered } from "../../src/runtime/dead-letters.ts";
import { haltTask } from "../../src/runtime/halt.ts";
import { runMaintenance } from "../../src/runtime/maintenance.ts";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import { insertOrderTask } from "../support/db.ts";
import {
  CHANNEL,
  type Harness,
  REQUESTER,
  SIGNING_SECRET,
  startHarness,
} from "../support/harness.ts";
import { type ChatRequest, type Script, scriptByAgent } from "../support/model-server.ts";
import {
  auditEvents,
  postsInThread,
  requestText,
  taskInThread,
  taskWithStatus,
  waitForApprovalCard,
  waitForEscalationCard,
} from "../support/observe.ts";
import { pingPongAgents, pingPongScript } from "../support/ping-pong.ts";
import {
  auditKinds,
  blockTexts,
  buttonsOf,
  escalationScript,
  missEscalationDeadline,
  REFUND_ARGS,
  refundCall,
  refundsOf,
  settledTask,
  taskOfThread,
  toolCallsOf,
} from "../support/scripts-humans.ts";
import { deliverCommand } from "../support/slack-signing.ts";

// A task that stops: dead letters, halts beside clicks and slow posts, caps reached late, a sweep
// step that fails, failures logged, and the reason it stopped, masked and cut wherever it is read.
// One suite per former test file.

describe("dead-letter-after-progress", async () => {
  // A model outage: one of the task's jobs fails try after try. Its last try fails while no run
  // holds the task; then another job (the sweep's, or a reply's) takes the task, the model answers,
  // and the task waits on a billing lead's approval. The first job's dead letter, read after that,
  // is about a task that has moved on: it must not fail it, nor withdraw the approval it waits on.
  let h: Harness;
  let answer: () => void = () => {};
  const held = new Promise<void>((resolve) => {
    answer = resolve;
  });
  before(async () => {
    h = await startHarness({
      script: scriptByAgent({
        billing: [
          async () => {
            await held;
            return { toolCalls: [{ name: "issue_refund", arguments: REFUND_ARGS }] };
          },
        ],
      }),
    });
  });
  after(async () => {
    await h.close();
  });

  /** The database's clock, which stamps a dead letter (pg-boss) and a task's activity alike. */
  async function databaseNow(): Promise<Date> {
    const { rows } = await sql<{ now: Date }>`select clock_timestamp() as now`.execute(h.db.db);
    assert.ok(rows[0]);
    return rows[0].now;
  }

  test("a dead letter about a task that moved on since leaves it, and its approval, alone", async () => {
    const { ts } = await h.mention("billing: please refund order 1077, the lamp came back");
    await h.until("the run to ask the model", async () => h.model.requests.length === 1);
    // The other job's last try failed now: before this run's turn, which the model holds.
    const failedAt = await databaseNow();
    answer();
    const approval = await waitForApprovalCard(h, "the refund to wait on its card");
    await h.until("the run to give the task up", async () => {
      const task = await taskOfThread(h.db.db, ts);
      return task?.lease_owner === null;
    });

    await markDeadLettered(h.baton.deps, approval.task_id, "the model server is down", failedAt);

    const task = await taskOfThread(h.db.db, ts);
    assert.equal(
      task?.status,
      "waiting_human",
      `the task ${task?.status}: ${task?.failure_reason}`,
    );
    const still = await h.db.db
      .selectFrom("approvals")
      .select("status")
      .where("id", "=", approval.id)
      .executeTakeFirstOrThrow();
    assert.equal(still.status, "pending", "the approval still waits on a billing lead");
    assert.equal(h.slack.callsTo("chat.update").length, 0, "the card keeps its buttons");
    assert.ok(
      postsInThread(h.slack, ts).every((p) => !/failed/i.test(String(p.args.text))),
      "no failure notice",
    );

    // A dead letter whose last try failed after the task's last move is the task's own: it stops it.
    await markDeadLettered(
      h.baton.deps,
      approval.task_id,
      "the model server is down",
      await databaseNow(),
    );
    const failed = await h.until("the task to fail", () => settledTask(h.db.db, ts, "failed"));
    assert.match(String(failed.failure_reason), /model server is down/);
  });
});

describe("dead-letter-reason", async () => {
  // The order system is down: every lookup throws, so every attempt of the task's job fails.
  const tools: ToolDefinition[] = demoTools.map((t) =>
    t.name === "lookup_order"
      ? {
          ...t,
          run: async () => {
            throw new Error("the order system timed out after 30 s");
          },
        }
      : t,
  );

  let h: Harness;
  before(async () => {
    // Two attempts (one retry) keep the test short; the default five only take longer.
    h = await startHarness({
      tools,
      jobRetries: 1,
      script: () => ({ toolCalls: [{ name: "lookup_order", arguments: { order_id: "1042" } }] }),
    });
  });
  after(async () => {
    await h.close();
  });

  test("a dead-lettered task tells its thread, once, that it failed and why", async () => {
    const { ts } = await h.mention("where is order 1042?");
    const task = await h.until(
      "the task to be dead-lettered",
      () => taskWithStatus(h.db.db, ts, "failed"),
      30_000,
    );
    const notices = await h.until("the notice", async () => {
      const posts = postsInThread(h.slack, ts);
      return posts.length > 0 ? posts : undefined;
    });
    await new Promise((r) => setTimeout(r, 3_000));
    assert.equal(postsInThread(h.slack, ts).length, 1, "told exactly once");
    const text = String(notices[0]?.args.text);
    assert.match(text, /failed/i);
    assert.match(
      text,
      /order system timed out/,
      `the notice says why: ${text}; reason: ${task.failure_reason}`,
    );
  });
});

describe("dead-letter-while-driven", async () => {
  // A model outage: the task's job fails try after try, and meanwhile the sweep (or a reply) queues
  // other jobs for it. The model comes back; one of those jobs takes the task and runs it, while the
  // job whose last try failed just before is dead-lettered. Its dead letter, read up to 2 s later,
  // must not fail the task the other run is driving, mid-turn.
  let h: Harness;
  let answer: () => void = () => {};
  const held = new Promise<void>((resolve) => {
    answer = resolve;
  });
  before(async () => {
    h = await startHarness({
      script: async () => {
        await held;
        return { content: "Order 1042 left the warehouse yesterday." };
      },
    });
  });
  after(async () => {
    await h.close();
  });

  test("a dead letter read while another run drives its task leaves the task to that run", async () => {
    const { ts } = await h.mention("where is order 1042?");
    await h.until("the run to ask the model", async () => h.model.requests.length === 1);
    const task = await taskInThread(h.db.db, ts);
    assert.ok(task?.lease_owner, "a run holds the task");

    await markDeadLettered(
      h.baton.deps,
      task.id,
      "it kept failing after several retries",
      new Date(),
    );
    answer();

    const done = await h.until("the answer", () => taskWithStatus(h.db.db, ts, "done", "failed"));
    assert.equal(done.status, "done", `the task ${done.status}: ${done.failure_reason}`);
    const posts = await h.until("the answer's post", async () => {
      const found = postsInThread(h.slack, ts);
      return found.length > 0 ? found : undefined;
    });
    assert.equal(posts.length, 1);
    assert.match(JSON.stringify(posts[0]?.args), /left the warehouse/);
  });
});

describe("halt-click-lock-order", async () => {
  // A click locks its approval, then the task; a task that stops locked the task, then its pending
  // approvals, so a click and a stop at the same moment waited on each other until Postgres killed
  // one (40P01). The stop now takes the approvals' locks first, in the click's order.

  let h: Harness;
  before(async () => {
    h = await startHarness({
      script: scriptByAgent({
        billing: [refundCall(), { content: "Refunded." }],
      }),
    });
  });
  after(async () => {
    await h.close();
  });

  test("a click and a stop at the same moment both finish: the click decides, the stop follows", async () => {
    const { ts } = await h.mention("billing: please refund order 1077, the lamp came back");
    const approval = await h.until("the refund to wait on its card", async () => {
      const row = await h.db.db.selectFrom("approvals").selectAll().executeTakeFirst();
      const task = await taskOfThread(h.db.db, ts);
      return row?.card_ts && task?.lease_owner === null ? row : undefined;
    });
    // No job workers from here on: the decision's job must not start a run, whose lease would make
    // the stop leave the task to it (a dead letter stops only a task no run drives).
    await h.restart({ workers: false });
    const deps = h.baton.deps;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let hasDecided!: () => void;
    const clickDecided = new Promise<void>((resolve) => {
      hasDecided = resolve;
    });
    // The click's transaction as decideApproval (src/runtime/approvals.ts) runs it, held open
    // between its two statements while the stop starts.
    const click = deps.db.transaction().execute(async (tx) => {
      const row = await approvalsDb.decideApproval(tx, approval.id, {
        status: "approved",
        by: "U0LEE",
        reason: null,
        checkedApprovers: approval.approvers,
      });
      assert.ok(row);
      hasDecided();
      await gate;
      await resumeAfterDecision(deps, tx, row, { by: "U0LEE", reason: null });
    });
    // The click holds the approval's row (and its transaction began) before the stop is asked: the
    // stop's "failed at" comes after it, as a dead letter's does. (Polling pg_locks could see another
    // session's lock on approvals, such as a delivery stamping a card's ts, and ask the stop first.)
    await clickDecided;
    const halt = markDeadLettered(deps, approval.task_id, "the job died", new Date());
    await h.until("the stop to wait on the click", async () => {
      const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from pg_stat_activity
      where wait_event_type = 'Lock' and query ilike '%approvals%'`.execute(h.db.db);
      return (rows[0]?.n ?? 0) > 0;
    });
    release();
    await Promise.all([click, halt]);

    const decided = await approvalsDb.findApproval(h.db.db, approval.id);
    assert.equal(decided?.status, "approved", "the click decided; the stop did not withdraw it");
    const task = await h.db.db
      .selectFrom("tasks")
      .selectAll()
      .where("id", "=", approval.task_id)
      .executeTakeFirstOrThrow();
    assert.equal(task.status, "failed");
  });
});

describe("halt-slow-post", async () => {
  // A halt found at the start of a turn (hop limit, cost cap, removed agent) first waits for the run's
  // posts still under way. Slack can hold one for long (Retry-After): the run renews its lease the
  // while, or another run would take the task over, not find the post in Slack yet, and post it again.

  const agentsFile = pingPongAgents(1);
  const script = pingPongScript;

  const LEASE_MS = 1_000;

  let h: Harness;
  before(async () => {
    h = await startHarness({ script, agentsFile, leaseMs: LEASE_MS });
  });
  after(async () => {
    await h.close();
  });

  test("handoff cards posted slowly while the run halts at the hop limit are posted once", async () => {
    // Slack throttles the handoff card: the run waits 3 s (Retry-After) and posts it then.
    h.slack.failNext("chat.postMessage", { error: "ratelimited", retryAfter: 3 });
    const { ts } = await h.mention("where is order 1042?");
    await h.slack.waitForCall("chat.postMessage", (c) => c.failed !== undefined);
    // The run now waits on that post in its halt, without renewing its lease; it runs out.
    await new Promise((r) => setTimeout(r, LEASE_MS + 500));
    // The requester writes in the thread: the reply's job takes the task over.
    await h.reply(ts, "any news?");
    await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"), 20_000);
    await new Promise((r) => setTimeout(r, 4_000));

    const cards = h.slack
      .callsTo("chat.postMessage")
      .filter((c) => !c.failed && c.args.thread_ts === ts && /Pong/.test(JSON.stringify(c.args)))
      .filter((c) => !/failed|stopped|could not/i.test(String(c.args.text)));
    // The limit's one handoff and the one past it: each card once.
    const texts = cards.map((c) => String(c.args.text));
    assert.equal(
      cards.length,
      2,
      `each handoff card is posted once (posted ${cards.length} cards: ${texts.join(" | ")})`,
    );
    assert.equal(new Set(texts).size, 2, texts.join(" | "));
  });
});

describe("halt-withdraws-approvals", async () => {
  // A task that stops (its job dead-lettered, say after a Slack outage kept its posts failing) while
  // a refund waits on a billing lead: before, the card kept its buttons, and a later Approve said
  // "Approved" for a refund the failed task would never make.

  let h: Harness;
  const seen: ChatRequest[] = [];
  before(async () => {
    h = await startHarness({
      script: scriptByAgent({
        billing: [
          refundCall(),
          (request) => {
            seen.push(request);
            return { content: "I could not refund order 1077: ask again if it is still needed." };
          },
        ],
      }),
    });
  });
  after(async () => {
    await h.close();
  });

  test("a task that stops withdraws the approvals it waits on; a late click does nothing", async () => {
    const { ts } = await h.mention("billing: please refund order 1077, the lamp came back");
    const approval = await waitForApprovalCard(h, "the refund to wait on its card");
    const task = await taskOfThread(h.db.db, ts);
    assert.ok(task);

    // Its job's last try failed just now, with the refund already waiting on its card.
    await markDeadLettered(h.baton.deps, task.id, "Slack kept refusing its posts", new Date());
    await h.until("the task to fail, its words delivered", () =>
      settledTask(h.db.db, ts, "failed"),
    );
    const withdrawn = await h.db.db
      .selectFrom("approvals")
      .selectAll()
      .where("id", "=", approval.id)
      .executeTakeFirstOrThrow();
    assert.equal(withdrawn.status, "withdrawn");
    const update = h.slack
      .callsTo("chat.update")
      .findLast((c) => c.args.ts === approval.card_ts && !c.failed);
    assert.ok(update, "the card is updated in place");
    assert.equal(buttonsOf(update).length, 0, "no button left to click");
    assert.match(blockTexts(update).join("\n"), /Withdrawn/);
    assert.equal((await auditKinds(h.db.db, task.id, "approval_withdrawn")).length, 1);
    // The parked refund ends with the task: no report shows the stopped task waiting on it.
    const [parked] = await toolCallsOf(h.db.db, task.id, "issue_refund");
    assert.equal(parked?.status, "withdrawn");
    const [billing] = await agentActivity(h.db.db, ["billing"], 86_400_000);
    assert.equal(billing?.writes.waiting, 0, "nothing is waiting on a person");

    // A billing lead clicks the card they still had open.
    const click = await h.clickCard(
      "U0LEE",
      APPROVAL_APPROVE,
      { id: approval.id, card_ts: approval.card_ts },
      ts,
    );
    assert.equal(click.status, 200);
    const told = await h.until("the lead to be told", async () =>
      h.slack.callsTo("chat.postEphemeral").find((c) => c.args.user === "U0LEE"),
    );
    assert.match(String(told.args.text), /already withdrawn.*Nothing more was done/);
    assert.equal((await refundsOf(h.db.db)).length, 0, "no refund made");

    // The requester writes again: the task opens, and billing is told the refund was not run.
    await h.reply(ts, "any news on my refund?");
    await h.until("billing to answer", async () => seen.length > 0);
    const toolResult = seen[0]?.messages.findLast((m) => m.role === "tool");
    assert.match(String(toolResult?.content), /not run: the task stopped/);
    const [call] = await toolCallsOf(h.db.db, task.id, "issue_refund");
    assert.equal(call?.status, "withdrawn");
    assert.equal((await refundsOf(h.db.db)).length, 0, "still no refund");
  });
});

describe("late-cap-halt", async () => {
  // A cost cap is checked on a run's copy of its task. A halt that lands after a person took the task
  // over (the run's lease lapsed, or a second run halted it too) escalated the held task again: a
  // second card, the task moved to the owners' lane without a word to the person holding it, and the
  // first card's "Hand it to an agent" left live for good.

  const SUPPORT_LEAD = "U0SUPPORTLEAD";

  let h: Harness;
  before(async () => {
    h = await startHarness({ script: scriptByAgent(escalationScript()) });
  });
  after(async () => {
    await h.close();
  });

  test("a cap halt landing on a task a person took over leaves it with them", async () => {
    const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
    const escalation = await waitForEscalationCard(h);
    await h.clickCard(SUPPORT_LEAD, ESCALATION_TAKE_OVER, escalation, ts);
    const held = await h.until("the lead to hold the task", async () => {
      const task = await taskOfThread(h.db.db, ts);
      return task?.owner_id === SUPPORT_LEAD ? task : undefined;
    });

    await haltTask(h.baton.deps, held, { reason: "over the cap", toHuman: true });

    const after = await taskOfThread(h.db.db, ts);
    assert.deepEqual(
      [after?.owner_kind, after?.owner_id, after?.status],
      ["human", SUPPORT_LEAD, "waiting_human"],
    );
    const rows = await h.db.db
      .selectFrom("escalations")
      .select(["status", "decided_by"])
      .where("task_id", "=", held.id)
      .execute();
    assert.deepEqual(
      rows,
      [{ status: "taken_over", decided_by: SUPPORT_LEAD }],
      "no second escalation",
    );
  });
});

describe("sweep-step-failure", async () => {
  // The sweep's steps are independent: the job queue failing for one orphaned task stopped the
  // sweep there, so no stranded Slack message was delivered and no deadline was enforced.

  let h: Harness;
  before(async () => {
    h = await startHarness({ script: scriptByAgent(escalationScript()), maintenance: false });
  });
  after(async () => {
    await h.close();
  });

  test("a sweep whose job queue fails for an orphaned task still enforces the deadlines", async () => {
    const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
    const escalation = await waitForEscalationCard(h);
    await missEscalationDeadline(h.db.db, escalation.id);
    // An active task no run holds, and a queue that fails for it.
    await insertOrderTask(h.db.db, `${ts}9`);
    const queue = h.baton.deps.queue;
    let tried = 0;
    queue.enqueueUnlessWaiting = async () => {
      tried++;
      throw new Error("the job queue is away");
    };

    await runMaintenance(h.baton.deps);
    assert.ok(tried >= 1, "the sweep met the failing step");
    const reminded = await auditEvents(h.db.db, escalation.task_id, "escalation_reminded");
    assert.equal(reminded.length, 1, "the deadline was enforced after the failed step");
  });
});

describe("failure-logged", async () => {
  // What the operator reads: every line Baton logs, as JSON.
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    level: "info",
    destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
  });
  const API_KEY = "sk-operator-key-0123456789abcdef";

  let h: Harness;
  before(async () => {
    // The agents file names a model the server does not have: every task stops at its first turn.
    h = await startHarness({
      log,
      apiKey: API_KEY,
      script: (body) => ({
        status: 404,
        error: `The model \`${body.model}\` does not exist or you do not have access to it.`,
      }),
    });
  });
  after(async () => {
    await h.close();
  });

  test("a task that stops because the model cannot be used is in the operator's log, with its task and reason", async () => {
    const { ts } = await h.mention("where is order 1042?");
    const task = await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"));
    const line = await h.until("the failure in the log", async () =>
      lines.find((l) => l.taskId === task.id && Number(l.level) >= 40),
    );
    assert.match(String(line.msg), /task failed/);
    assert.match(String(line.reason), /does not exist/, JSON.stringify(line));
    assert.doesNotMatch(JSON.stringify(lines), new RegExp(API_KEY));
  });
});

describe("failure-reason", async () => {
  // A stopped task's reason is often an error's message, read by people in the thread, the audit
  // trail and `/baton status`. Behind an OpenAI-compatible gateway the key has no shape Baton knows,
  // and errors repeat what they got: the key, or a whole request.
  const KEY = "gw-7c1e94b2a05d";
  const tools: ToolDefinition[] = demoTools.map((t) =>
    t.name === "lookup_order"
      ? {
          ...t,
          run: async () => {
            throw new ConfigError(
              `the order system refused key ${KEY} for ${"<!channel> ".repeat(5_000)}`,
            );
          },
        }
      : t,
  );
  const script: Script = (request) =>
    requestText(request).includes("gateway")
      ? { status: 400, error: `Invalid request for key ${KEY}; Authorization: Bearer ${KEY}` }
      : { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1042" } }] };

  let h: Harness;
  before(async () => {
    h = await startHarness({ script, tools, apiKey: KEY });
  });
  after(async () => {
    await h.close();
  });

  async function auditRowsHolding(text: string) {
    return h.db.db
      .selectFrom("audit_events")
      .select("kind")
      .where((eb) => eb(eb.cast("data", "text"), "like", `%${text}%`))
      .execute();
  }

  async function failureNotice(ts: string) {
    return h.until("the failure notice", async () =>
      postsInThread(h.slack, ts).find((p) => /failed/.test(JSON.stringify(p.args))),
    );
  }

  test("a model error that repeats a gateway's API key fails the task without the key in Slack or the ledger", async () => {
    const { ts } = await h.mention("the gateway: where is order 1042?");
    const failed = await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"));
    assert.match(String(failed.failure_reason), /Invalid request for key \[redacted\]/);
    assert.ok(!String(failed.failure_reason).includes(KEY));
    const notice = JSON.stringify((await failureNotice(ts)).args);
    assert.match(notice, /\[redacted\]/);
    assert.ok(!notice.includes(KEY));
    assert.deepEqual(await auditRowsHolding(KEY), []);
  });

  test("a stopped task's reason is masked and cut to 2,000 characters wherever it is kept", async () => {
    const { ts } = await h.mention("where is order 1042?");
    const failed = await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"));
    const reason = String(failed.failure_reason);
    assert.ok(reason.length <= 2_000, `the reason is ${reason.length} characters`);
    assert.match(reason, /^the order system refused key \[redacted\] for <!channel> .*…$/s);
    const [stored] = await h.db.db
      .selectFrom("audit_events")
      .select("data")
      .where("task_id", "=", failed.id)
      .where("kind", "=", "task_failed")
      .execute();
    assert.deepEqual(stored?.data, { reason });
    assert.ok(!JSON.stringify((await failureNotice(ts)).args).includes(KEY));
    assert.deepEqual(await auditRowsHolding(KEY), []);
  });

  test("/baton status cuts a long title and reason, and its answer stays within Slack's limits", async () => {
    const { ts } = await h.mention("where is order 1042?");
    const failed = await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"));
    // As a row written before reasons were cut holds them.
    await h.db.db
      .updateTable("tasks")
      .set({ title: "<!here> ".repeat(1_000), failure_reason: "<!channel> ".repeat(10_000) })
      .where("id", "=", failed.id)
      .execute();
    await deliverCommand(h.endpoint, SIGNING_SECRET, {
      command: "/baton",
      text: `status ${failed.id}`,
      user_id: REQUESTER,
      channel_id: CHANNEL,
      response_url: h.slack.responseUrl,
    });
    const reply = await h.until("the answer", async () => h.slack.callsTo("response_url")[0]);
    const text = String(reply.args.text);
    assert.ok(text.length <= 4_000, `the answer is ${text.length} characters`);
    const [title = "", because = ""] = text.split("\n");
    // As a person typed it: "@here", which notifies nobody (a zero-width joiner after the @).
    assert.match(title, /^\*(@\u200Dhere )+.*…\*: failed, owned by /);
    assert.ok(title.length < 300, `the title line is ${title.length} characters`);
    assert.match(because, /^Stopped because (&lt;!channel&gt; )+.*…\.$/);
    assert.match(text, new RegExp(`Task \`${failed.id}\``));
    assert.ok(!/<!(here|channel)>/.test(text), "no broadcast");
  });
});

describe("stop-with-a-connection-held", async () => {
  // A write tool's transaction waiting on its endpoint holds a pooled connection past the stop's
  // deadline: the pool's end would wait for it, and the stop with it, past `docker stop`'s 10 s.
  test("a stop does not wait for a connection a run still holds past its deadline", async () => {
    const h = await startHarness({ script: scriptByAgent({}), stopWaitMs: 300 });
    const released = Promise.withResolvers<void>();
    const holding = Promise.withResolvers<void>();
    const work = h.baton.deps.db.connection().execute(async (connection) => {
      await sql`select 1`.execute(connection);
      holding.resolve();
      await released.promise;
    });
    await holding.promise;
    try {
      // Without the bound this never resolves: the held connection is never given back.
      await h.baton.stop();
    } finally {
      released.resolve();
      await work;
      await h.close();
    }
  });
});
