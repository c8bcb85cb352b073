import assert from "node:assert/strict";
import { connect, createServer, type Socket } from "node:net";
import { after, afterEach, before, describe, test } from "node:test";
import { sql } from "kysely";
import pg from "pg";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import type { ToolDefinition } from "../../src/core/tools/tool.ts";
import { type Db, isConnectionLost } from "../../src/db/database.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { TASK_QUEUE } from "../../src/jobs/queue.ts";
import { createLogger } from "../../src/log.ts";
import { runMaintenance } from "../../src/runtime/maintenance.ts";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { testServerUrl } from "../support/db.ts";
import {
  CHANNEL,
  type Harness,
  REQUESTER,
  SIGNING_SECRET,
  startHarness,
} from "../support/harness.ts";
import { type Script, scriptByAgent } from "../support/model-server.ts";
import {
  auditEvents,
  postsInThread,
  taskWithStatus,
  waitForApprovalCard,
} from "../support/observe.ts";
import { pingPongAgents, pingPongScript } from "../support/ping-pong.ts";
import {
  assertFlowOneDoneOnce,
  flowOneByState,
  leaseLeftMs,
  playFlowOneOnce,
  resetFlow1Data,
  whereIsMyOrderScript,
} from "../support/scripts.ts";
import {
  finishedTask,
  orderReturnScript,
  refundsOf,
  taskOfThread,
} from "../support/scripts-humans.ts";
import { deliverCommand, deliverEvent, messageEvent } from "../support/slack-signing.ts";
import { startPostgresProxy } from "../support/tcp-proxy.ts";

// Durability: lost connections, an outage, runs at once, slow tools, the sweep's jobs, turns written
// behind, a late mention, a reply to a failed task, a start whose answer was lost. One suite per
// former test file.

describe("connection-lost", async () => {
  /** Ends every other session on the test's database, as a Postgres restart or a failover does. */
  async function dropConnections(url: string): Promise<number> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const { rows } = await client.query<{ pid: number }>(
        `select pid from pg_stat_activity
       where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'`,
      );
      await client.query("select pg_terminate_backend(pid) from unnest($1::int[]) as pid", [
        rows.map((r) => r.pid),
      ]);
      return rows.length;
    } finally {
      await client.end();
    }
  }

  /** A check that a dropped connection under the test's own pool retries instead of failing. */
  function retrying<T>(check: () => Promise<T | undefined>) {
    return async () => {
      try {
        return await check();
      } catch (error) {
        // The test's own pooled connections were dropped too (EPIPE, 57P01, "Connection terminated").
        if (isConnectionLost(error)) return undefined;
        throw error;
      }
    };
  }

  const harnesses: Harness[] = [];
  after(async () => {
    for (const h of harnesses) await h.close();
  });

  /**
   * Flow 1 with every database connection dropped once, where `at` says: while the run waits for
   * Inventory's model call (Baton's pool, the run's statement lane, and the queue's connections go,
   * with the stock read's turn perhaps still in flight), or inside adjust_stock, with its transaction
   * open and the tool's own statement about to go out on the dropped connection.
   */
  async function flowWithConnectionsDropped(
    at: "model" | "tool",
    options: { queueConnectionEnded?: boolean } = {},
  ) {
    let dropped = 0;
    const drop = async () => {
      if (dropped === 0) dropped = await dropConnections(h.db.url);
    };
    const tools = demoTools.map((tool) =>
      at === "tool" && tool.name === "adjust_stock"
        ? {
            ...tool,
            run: async (...args: Parameters<typeof tool.run>) => {
              await drop();
              return tool.run(...args);
            },
          }
        : tool,
    );
    const h: Harness = await startHarness({
      tools,
      script: flowOneByState(async (agent, next) => {
        const name = "toolCalls" in next ? next.toolCalls[0]?.name : undefined;
        if (at === "model" && agent === "inventory" && name === "adjust_stock") await drop();
      }),
    });
    harnesses.push(h);
    let bringForwards = 0;
    if (options.queueConnectionEnded) {
      // The queue's pool hands out a connection whose server process was ended but has not said so
      // yet (one slow to end, on a busy machine): the failed run's statement that brings its job
      // forward fails as the process ends.
      const queue = h.baton.deps.queue;
      const runNow = queue.runNow.bind(queue);
      queue.runNow = async (jobId) => {
        if (++bringForwards === 1)
          throw Object.assign(new Error("terminating connection due to administrator command"), {
            code: "57P01",
          });
        return runNow(jobId);
      };
    }

    const { status, ts } = await h.mention("where is order 1042?");
    assert.equal(status, 200);
    // Well before the lease (two minutes) runs out, when the held-back job would come due anyway.
    const task = await h.until(
      "the task to finish after its connections were lost",
      retrying(() => finishedTask(h.db.db, ts)),
      30_000,
    );
    assert.ok(dropped > 0, "connections were dropped under the task");
    if (options.queueConnectionEnded)
      assert.equal(bringForwards, 2, "the job was brought forward on the second try");

    await assertFlowOneDoneOnce({ db: h.db.db, slack: h.slack, until: h.until }, task, ts);
  }

  test("every database connection lost while a run waits for the model: the task finishes, each effect once", async () => {
    await flowWithConnectionsDropped("model");
  });

  test("every database connection lost inside a write tool's transaction: the tool runs once, on the retry", async () => {
    await flowWithConnectionsDropped("tool");
  });

  test("the queue's connection found ended as the failed run brings its job forward: tried again, the job runs at once", async () => {
    await flowWithConnectionsDropped("tool", { queueConnectionEnded: true });
  });
});

describe("database-outage", async () => {
  const OUTAGE_MS = 3_000;

  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  test("Postgres unreachable for three seconds mid-task: Baton stays up, and the task finishes once it is back", async () => {
    const proxy = await startPostgresProxy(await testServerUrl());
    cleanups.push(proxy.close);
    let cutAt = 0;
    let restoredAt = 0;
    const h: Harness = await startHarness({
      databaseUrl: proxy.urlOf,
      // The background sweeps run too, and meet the outage like everything else.
      maintenance: true,
      script: flowOneByState(async (agent, next) => {
        const name = "toolCalls" in next ? next.toolCalls[0]?.name : undefined;
        // Inventory is about to correct the count: the database goes away under the run.
        if (agent === "inventory" && name === "adjust_stock" && cutAt === 0) {
          cutAt = Date.now();
          proxy.cut();
          setTimeout(() => {
            restoredAt = Date.now();
            proxy.restore();
          }, OUTAGE_MS);
        }
      }),
    });
    cleanups.push(h.close);

    const { status, ts } = await h.mention("where is order 1042?");
    assert.equal(status, 200);
    // The test's own connections do not go through the proxy.
    const task = await h.until("the task to finish", () => finishedTask(h.db.db, ts), 60_000);
    assert.ok(cutAt > 0 && restoredAt > 0, "the database was cut under the task, and restored");
    assert.ok(proxy.refused > 0, "Baton tried to reach the database while it was away");
    await assertFlowOneDoneOnce({ db: h.db.db, slack: h.slack, until: h.until }, task, ts);
  });

  test("an Approve clicked, or /baton asked, while Postgres is away: the person is told nothing was done, and the click counts once it is back", async () => {
    const proxy = await startPostgresProxy(await testServerUrl());
    cleanups.push(proxy.close);
    const h = await startHarness({
      databaseUrl: proxy.urlOf,
      script: scriptByAgent(orderReturnScript()),
    });
    cleanups.push(h.close);
    const { ts } = await h.mention("I'd like to return order 1077, please refund me");
    const approval = await waitForApprovalCard(h, "the refund to wait on its card");

    const ready = () => fetch(new URL("/readyz", h.endpoint));
    assert.equal((await ready()).status, 200);
    proxy.cut();
    const away = await ready();
    assert.equal(away.status, 503, "not ready while its database is away");
    assert.equal(await away.text(), "the database does not answer");
    assert.equal((await fetch(new URL("/healthz", h.endpoint))).status, 200, "but alive");
    const click = await h.clickCard("U0LEE", APPROVAL_APPROVE, approval, ts);
    assert.equal(click.status, 200, "Slack gets its answer: the approver is told instead");
    const told = h.slack.ephemerals.filter((e) => e.user === "U0LEE");
    assert.equal(told.length, 1);
    assert.equal(told[0]?.channel, CHANNEL);
    assert.equal(told[0]?.thread_ts, ts);
    assert.match(
      String(told[0]?.text),
      /^Baton could not reach its database just now, so nothing was done\. Try again in a minute\.$/,
    );
    // A command answers through its response_url.
    const asked = await deliverCommand(h.endpoint, SIGNING_SECRET, {
      command: "/baton",
      text: "status 1077",
      user_id: "U0OPS",
      channel_id: CHANNEL,
      response_url: h.slack.responseUrl,
    });
    assert.equal(asked.status, 200);
    const answer = await h.until(
      "the answer to /baton",
      async () => h.slack.callsTo("response_url")[0],
    );
    assert.equal(answer.args.response_type, "ephemeral");
    assert.match(String(answer.args.text), /could not reach its database/);
    const pending = await h.db.db
      .selectFrom("approvals")
      .select("status")
      .where("id", "=", approval.id)
      .executeTakeFirstOrThrow();
    assert.equal(pending.status, "pending");

    proxy.restore();
    // A pooled connection the outage broke fails once before it is replaced: ready again soon.
    await h.until("ready again", async () => (await ready()).status === 200 || undefined);
    const again = await h.clickCard("U0LEE", APPROVAL_APPROVE, approval, ts);
    assert.equal(again.status, 200);
    await h.until("the task to finish", () => finishedTask(h.db.db, ts), 30_000);
    assert.equal((await refundsOf(h.db.db)).length, 1, "one refund, from the second click");
    assert.equal(h.slack.ephemerals.filter((e) => e.user === "U0LEE").length, 1);
  });
});

describe("run-at-once", async () => {
  // Flow 1 twice; the second time, the model fails the run's first request, and the openai client's
  // two retries of it, so the run itself fails.
  const once = whereIsMyOrderScript();
  const flow = scriptByAgent(
    Object.fromEntries(
      Object.entries(once).map(([agent, replies]) => [agent, [...replies, ...replies]]),
    ),
  );
  let failedAt = -1;
  const script: Script = (request, context) => {
    if (failedAt >= 0 && context.callIndex >= failedAt && context.callIndex < failedAt + 3)
      return { status: 500, error: "the model is down for a moment" };
    return flow(request, context);
  };

  let h: Harness;
  before(async () => {
    h = await startHarness({ script });
  });
  after(async () => {
    await h.close();
  });

  async function jobsOf(taskId: string) {
    const rows = await sql<{ state: string; retry_count: number; started: boolean }>`
    select state, retry_count, started_on is not null as started from pgboss.job
    where name = 'task.run' and data->>'taskId' = ${taskId}`.execute(h.db.db);
    return rows.rows;
  }

  test("a new task runs where it was accepted; its job, held back, is marked done by that run", async () => {
    const { ts } = await h.mention("where is order 1042?");
    const task = await finishedTaskOf(ts);
    // Ten turns, each asked of the model once: the job did not run the task a second time.
    assert.equal(h.model.requests.length, 10);
    assert.equal((await h.db.db.selectFrom("shipments").selectAll().execute()).length, 1);
    const jobs = await h.until("the job to complete", async () => {
      const rows = await jobsOf(task.id);
      return rows.length === 1 && rows[0]?.state === "completed" ? rows : undefined;
    });
    assert.equal(jobs[0]?.started, false, "done while still queued: no worker ran it");
    const lease = await h.db.db
      .selectFrom("tasks")
      .select(["lease_owner", "lease_until"])
      .where("id", "=", task.id)
      .executeTakeFirstOrThrow();
    assert.deepEqual(lease, { lease_owner: null, lease_until: null }, "the lease is given up");
  });

  test("a run started at once that fails brings its job forward, which retries it; every effect happens once", async () => {
    await resetFlow1Data(h.db.db);
    failedAt = h.model.requests.length;
    const { ts } = await h.mention("where is order 1042, again?");
    const task = await finishedTaskOf(ts);
    assert.equal(
      h.model.requests.length - failedAt,
      13,
      "the failed request 3 times, then ten turns",
    );
    assert.equal((await h.db.db.selectFrom("shipments").selectAll().execute()).length, 1);
    const jobs = await h.until("the job to complete", async () => {
      const rows = await jobsOf(task.id);
      return rows.some((j) => j.state === "completed") ? rows : undefined;
    });
    assert.deepEqual(
      jobs.map((j) => [j.state, j.retry_count, j.started]),
      [["completed", 0, true]],
      "the one job, run at once and not held until the lease would run out",
    );
  });

  function finishedTaskOf(ts: string) {
    return h.until("the task to finish", () => finishedTask(h.db.db, ts));
  }
});

describe("slow-tool", async () => {
  const LEASE_MS = 600;

  let h: Harness | undefined;
  let h2: Harness | undefined;
  after(async () => {
    await h?.close();
    await h2?.close();
  });

  test("tools slower than the lease: the run keeps its lease through them, and the flow ends once", async () => {
    // A read tool (run without a lock) and a write tool (run in the turn's transaction, the task
    // locked) that each take two and a half leases, as an external system that hangs might.
    const leaseLeft = new Map<string, number>();
    const slowed = (tool: ToolDefinition): ToolDefinition => ({
      ...tool,
      async run(ctx, input) {
        await new Promise((resolve) => setTimeout(resolve, LEASE_MS * 2.5));
        if (tool.toolClass === "read")
          leaseLeft.set(tool.name, await leaseLeftMs(harness.db.db, ctx.taskId));
        return tool.run(ctx, input);
      },
    });
    let inventoryCalls = 0;
    const slow = new Set(["lookup_order", "adjust_stock"]);
    const harness: Harness = await startHarness({
      leaseMs: LEASE_MS,
      tools: demoTools.map((tool) => (slow.has(tool.name) ? slowed(tool) : tool)),
      script: flowOneByState(async (agent) => {
        // Inventory's third call comes after adjust_stock's turn committed.
        inventoryCalls += agent === "inventory" ? 1 : 0;
        if (agent === "inventory" && inventoryCalls === 3)
          leaseLeft.set("adjust_stock", await leaseLeftMs(harness.db.db));
      }),
    });
    h = harness;
    await playFlowOneOnce(harness);
    const left = leaseLeft.get("lookup_order");
    assert.ok(
      left !== undefined && left > 0,
      `the lease was renewed while the read tool was slow (${left} ms left, 2.5 leases in)`,
    );
    const afterWrite = leaseLeft.get("adjust_stock");
    assert.ok(
      afterWrite !== undefined && afterWrite > LEASE_MS / 2,
      `the write tool's turn left the lease extended from its commit (${afterWrite} ms left)`,
    );
    // No second run took the task over and asked the model the same step again.
    assert.equal(harness.model.requestsFor("customer-service").length, 3);
    assert.equal(harness.model.requestsFor("inventory").length, 3);
  });

  test("a last answer Slack is slower than the lease to take: the run keeps the task until it is posted", async () => {
    const harness = await startHarness({
      leaseMs: LEASE_MS,
      script: scriptByAgent(whereIsMyOrderScript()),
    });
    h2 = harness;
    const slow = harness.slack.holdAnswer("chat.postMessage", (c) =>
      /on the way/.test(String(c.args.text)),
    );
    const { ts } = await harness.mention("where is order 1042?");
    await slow.arrived;
    await new Promise((resolve) => setTimeout(resolve, LEASE_MS * 2.5));
    const left = await leaseLeftMs(harness.db.db);
    slow.release();
    assert.ok(
      left > 0,
      `the lease was renewed while the post waited (${left} ms left, 2.5 leases in)`,
    );

    const task = await harness.until("the task to finish", () => finishedTask(harness.db.db, ts));
    await assertFlowOneDoneOnce(
      { db: harness.db.db, slack: harness.slack, until: harness.until },
      task,
      ts,
    );
    await harness.until("the lease to be given up", async () => {
      const row = await harness.db.db
        .selectFrom("tasks")
        .select("lease_owner")
        .where("id", "=", task.id)
        .executeTakeFirstOrThrow();
      return row.lease_owner === null;
    });
  });
});

describe("sweep-one-job-per-task", async () => {
  // The model server is down. The maintenance sweep, every 15 s on every replica, queues a job for
  // each active task no run holds: one whose job waits to retry must not get another chain of
  // retries each time (each chain asks the model again, and ends in its own dead letter).
  let h: Harness;
  let down = true;
  before(async () => {
    h = await startHarness({
      script: () =>
        down
          ? { status: 503, error: "the model server is down" }
          : { content: "Order 1042 left the warehouse yesterday." },
    });
  });
  after(async () => {
    await h.close();
  });

  /** The task's jobs by state, as pg-boss keeps them. */
  async function jobsOf(taskId: string): Promise<Record<string, number>> {
    const { rows } = await sql<{ state: string; n: number }>`
    select state, count(*)::int as n from pgboss.job
    where name = ${TASK_QUEUE} and data->>'taskId' = ${taskId} group by state`.execute(h.db.db);
    return Object.fromEntries(rows.map((r) => [r.state, r.n]));
  }

  const waiting = (jobs: Record<string, number>) => (jobs.created ?? 0) + (jobs.retry ?? 0);

  test("an outage does not multiply a task's jobs: the sweep queues one only when none waits", async () => {
    const { ts } = await h.mention("where is order 1042?");
    const task = await h.until("the first try to fail and wait to retry", async () => {
      const row = await taskWithStatus(h.db.db, ts, "active");
      return row && !row.lease_owner && (await jobsOf(row.id)).retry === 1 ? row : undefined;
    });
    // Every worker is down: the retry waits, and nothing takes the task meanwhile.
    await h.restart({ workers: false });
    assert.deepEqual(await jobsOf(task.id), { retry: 1 });
    const backoff = async () =>
      (
        await sql<{ start_after: Date }>`
        select start_after from pgboss.job where name = ${TASK_QUEUE}
          and data->>'taskId' = ${task.id} and state = 'retry'`.execute(h.db.db)
      ).rows;
    const due = await backoff();

    // Three sweeps, as three replicas, or one replica over 45 s.
    for (let i = 0; i < 3; i++) await runMaintenance(h.baton.deps);
    assert.equal(waiting(await jobsOf(task.id)), 1, "still one job waits: the retry");
    assert.deepEqual(await backoff(), due, "and it keeps its backoff");

    // A task whose job is gone (a worker that died took it with it) gets one at the first sweep.
    const [retry] = (
      await sql<{ id: string }>`
      select id from pgboss.job where name = ${TASK_QUEUE} and data->>'taskId' = ${task.id}
        and state = 'retry'`.execute(h.db.db)
    ).rows;
    assert.ok(retry);
    await h.baton.deps.queue.done(h.db.db, retry.id);
    assert.equal(waiting(await jobsOf(task.id)), 0);
    // Two replicas' sweeps at once: one looks and queues under the task's lock.
    await Promise.all([runMaintenance(h.baton.deps), runMaintenance(h.baton.deps)]);
    assert.equal(waiting(await jobsOf(task.id)), 1, "queued at the first sweep");
    await runMaintenance(h.baton.deps);
    assert.equal(waiting(await jobsOf(task.id)), 1, "and not again");

    // The model is back and workers run: the one job answers.
    down = false;
    const asked = h.model.requests.length;
    await h.restart({ workers: true });
    await h.until("the answer", () => taskWithStatus(h.db.db, ts, "done"));
    assert.equal(h.model.requests.length - asked, 1, "one model call once it is back");
  });

  test("an accepted message queues its task's job, once, whatever the sweep does", async () => {
    await h.restart({ workers: false });
    const { ts } = await h.mention("where is order 1077?");
    const task = await h.until("the task", () => taskWithStatus(h.db.db, ts, "active"));
    assert.deepEqual(await jobsOf(task.id), { created: 1 });
    await runMaintenance(h.baton.deps);
    assert.deepEqual(await jobsOf(task.id), { created: 1 });
  });
});

describe("turns-behind", async () => {
  // A run writes a turn's statement behind it and starts the next turn at once (turn-lane.ts). These
  // tests change the task under such a run, from the model's side, while its turns are in flight.
  // Each test plays flow 1 from its start.
  let flow = scriptByAgent(whereIsMyOrderScript());
  let beforeRequest:
    | ((agentId: string | undefined, agentCallIndex: number) => Promise<void>)
    | undefined;
  const script: Script = async (request, context) => {
    await beforeRequest?.(context.agentId, context.agentCallIndex);
    return flow(request, context);
  };

  let h: Harness;
  before(async () => {
    h = await startHarness({ script });
  });
  after(async () => {
    await h.close();
  });

  async function modelCallSteps(taskId: string): Promise<number[]> {
    const rows = await h.db.db
      .selectFrom("model_calls")
      .select("step_no")
      .where("task_id", "=", taskId)
      .orderBy("step_no")
      .execute();
    return rows.map((r) => r.step_no);
  }

  test("another run taking the task over mid-run: the turn behind and every one after it write nothing, and the run stops", async () => {
    beforeRequest = async (agentId, agentCallIndex) => {
      // Customer Service's second request (the transfer): its first turn has landed; now another
      // process takes the task over, as after this run's lease ran out.
      if (agentId !== "customer-service" || agentCallIndex !== 1) return;
      await h.until("the first turn to land", async () => {
        const rows =
          await sql`select 1 from model_calls join tasks on tasks.id = model_calls.task_id
        where tasks.status = 'active'`.execute(h.db.db);
        return rows.rows.length === 1;
      });
      await sql`update tasks set lease_owner = 'another-process/1',
      lease_until = now() + interval '10 minutes' where status = 'active'`.execute(h.db.db);
    };
    const { ts } = await h.mention("where is order 1042?");
    const task = await h.until("the task", () => taskOfThread(h.db.db, ts));
    await h.until("the run to stop", async () => {
      await h.baton.deps.runs.drain();
      return h.model.requests.length >= 2;
    });
    await h.baton.deps.runs.drain();
    assert.deepEqual(await modelCallSteps(task.id), [1], "only the turn before the takeover");
    const now = await h.db.db
      .selectFrom("tasks")
      .selectAll()
      .where("id", "=", task.id)
      .executeTakeFirstOrThrow();
    assert.equal(now.step_no, 1);
    assert.equal(now.owner_id, "customer-service");
    assert.equal(now.lease_owner, "another-process/1", "the run left the lease to its holder");
    const handoffs = await h.db.db
      .selectFrom("handoffs")
      .select("kind")
      .where("task_id", "=", task.id)
      .execute();
    assert.deepEqual(handoffs, [{ kind: "start" }], "no transfer");
    assert.equal(
      h.slack.messagesIn("C0ORDERS", ts).filter((m) => m.ts !== ts).length,
      0,
      "nothing was posted for the dropped turns",
    );
    // At most the transfer and the turn started behind it were asked: the run stopped there.
    assert.ok(h.model.requests.length <= 3, `${h.model.requests.length} requests`);
    await sql`update tasks set status = 'failed', lease_owner = null, lease_until = null
    where id = ${task.id}`.execute(h.db.db);
  });

  test("a reply that lands while turns are written behind is read by a later turn of the same run", async () => {
    await resetFlow1Data(h.db.db);
    flow = scriptByAgent(whereIsMyOrderScript());
    const asked = h.model.requests.length;
    let thread = "";
    let replied = false;
    beforeRequest = async (agentId) => {
      // Fulfillment's first request: the requester adds something in the thread.
      if (agentId !== "fulfillment" || replied) return;
      replied = true;
      const { status } = await h.reply(thread, "it is a birthday present, please hurry");
      assert.equal(status, 200);
    };
    const started = h.mention("where is order 1042, please?");
    thread = (await started).ts;
    const task = await h.until("the task to finish", () => finishedTask(h.db.db, thread));
    const later = h.model.requests.slice(asked);
    const readIt = later.findIndex((r) =>
      r.body.messages.some((m) => String(m.content ?? "").includes("birthday present")),
    );
    assert.ok(readIt > 0, "a later request carries the reply");
    const consumed = await h.db.db
      .selectFrom("task_inputs")
      .select("consumed_at_step")
      .where("task_id", "=", task.id)
      .execute();
    assert.equal(consumed.length, 1);
    assert.ok(consumed[0]?.consumed_at_step, "the reply was given to a turn");
    assert.equal((await h.db.db.selectFrom("shipments").selectAll().execute()).length, 1);
  });
});

describe("late-mention", async () => {
  // Slack delivers events in no set order, and retries one Baton failed to take a minute later. A
  // reply in a mention's thread can so reach Baton before the mention has made the thread a task:
  // it is passed over then, and read once the mention arrives.

  const harnesses: Harness[] = [];
  after(async () => {
    for (const harness of harnesses) await harness.close();
  });

  test("a reply that reached Baton before its thread's mention (Slack retried the mention) is read too", async () => {
    const asked: string[] = [];
    const script: Script = async (request) => {
      const seen = JSON.stringify(request.messages);
      asked.push(seen);
      return {
        content: seen.includes("order 1078") ? "Order 1078 ships tomorrow." : "Which order is it?",
      };
    };
    const harness = await startHarness({ script });
    harnesses.push(harness);
    const { ts } = harness.slack.addMessage({
      channel: CHANNEL,
      user: REQUESTER,
      text: "<@U0BATONBOT> where is my order?",
    });
    // Baton failed to take the mention the first time; meanwhile the requester added the number.
    assert.equal((await harness.reply(ts, "it is order 1078")).status, 200);
    assert.equal(
      await finishedTask(harness.db.db, ts),
      undefined,
      "no task yet: the reply is passed over",
    );

    const retried = await harness.mention("where is my order?", { ts, retryNum: 1 });
    assert.equal(retried.status, 200);
    await harness.until("the answer that read the reply", async () =>
      harness.slack.messagesIn(CHANNEL, ts).some((m) => m.text === "Order 1078 ships tomorrow.")
        ? true
        : undefined,
    );
    const task = await harness.until("the task to finish", () => finishedTask(harness.db.db, ts));
    const inputs = await harness.db.db
      .selectFrom("task_inputs")
      .select(["text", "consumed_at_step"])
      .where("task_id", "=", task.id)
      .execute();
    assert.deepEqual(
      inputs.map((i) => i.text),
      ["it is order 1078"],
      "the reply is read once",
    );
    assert.ok(inputs.every((i) => i.consumed_at_step !== null));

    // Slack retrying the mention once more reads the thread again and adds nothing.
    assert.equal((await harness.mention("where is my order?", { ts, retryNum: 2 })).status, 200);
    const again = await harness.db.db
      .selectFrom("task_inputs")
      .select("text")
      .where("task_id", "=", task.id)
      .execute();
    assert.equal(again.length, 1);

    // A mention that arrives on time does not read its thread.
    const before = harness.slack.callsTo("conversations.replies").length;
    const fresh = await harness.mention("where is order 1042?");
    await harness.until("the on-time task to finish", () => finishedTask(harness.db.db, fresh.ts));
    assert.equal(harness.slack.callsTo("conversations.replies").length, before);
  });

  test("a late mention whose thread Slack fails to show: retried while Slack is down, let go when Slack refuses", async () => {
    const script: Script = async (request) => ({
      content: JSON.stringify(request.messages).includes("order 1078")
        ? "Order 1078 ships tomorrow."
        : "Which order is it?",
    });
    const harness = await startHarness({ script });
    harnesses.push(harness);
    const mention = () =>
      harness.slack.addMessage({
        channel: CHANNEL,
        user: REQUESTER,
        text: "<@U0BATONBOT> where is my order?",
      }).ts;

    // Slack is down: the mention is not acknowledged, so Slack sends it again, and that one reads
    // the reply.
    const a = mention();
    await harness.reply(a, "it is order 1078");
    harness.slack.failNext("conversations.replies", { error: "service_unavailable" });
    assert.equal((await harness.mention("where is my order?", { ts: a, retryNum: 1 })).status, 500);
    assert.equal((await harness.mention("where is my order?", { ts: a, retryNum: 2 })).status, 200);
    await harness.until("the answer that read the reply", async () =>
      harness.slack.messagesIn(CHANNEL, a).some((m) => m.text === "Order 1078 ships tomorrow.")
        ? true
        : undefined,
    );

    // Slack refuses (the thread is gone): the task goes on without the replies; a retry would fail
    // the same way.
    const b = mention();
    harness.slack.failNext("conversations.replies", { error: "thread_not_found" });
    assert.equal((await harness.mention("where is my order?", { ts: b, retryNum: 1 })).status, 200);
    await harness.until("the task to finish", () => finishedTask(harness.db.db, b));
  });
});

describe("reply-to-failed-task", async () => {
  // A task that fails left the reply its run had read unread; the end of the run opened the task
  // again for it, the next run failed the same way, and so on: the thread filled with failure
  // notices, and with a model that refuses the request, each one was a billed model call.

  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  const failureNotices = (harness: Harness, ts: string) =>
    postsInThread(harness.slack, ts).filter((p) => /task failed/i.test(String(p.args.text)));

  /** Settled: failed, no run holding it, no reply unread and no job left to run it. */
  async function settledFailed(db: Db, ts: string) {
    const task = await taskWithStatus(db, ts, "failed");
    if (!task || task.lease_owner !== null) return undefined;
    const { rows } = await sql<{ unread: number; jobs: number }>`
    select
      (select count(*)::int from task_inputs
        where task_id = ${task.id} and consumed_at_step is null) as unread,
      (select count(*)::int from pgboss.job
        where name = 'task.run' and data->>'taskId' = ${task.id}
          and state in ('created', 'retry', 'active')) as jobs`.execute(db);
    return rows[0]?.unread === 0 && rows[0]?.jobs === 0 ? task : undefined;
  }

  test("a reply to a task that failed at the hop limit is told once that it failed", async () => {
    const harness = await startHarness({ script: pingPongScript, agentsFile: pingPongAgents(2) });
    h = harness;
    const { ts } = await harness.mention("where is order 1042?");
    await harness.until("the first failure notice", async () =>
      failureNotices(harness, ts).length === 1 ? true : undefined,
    );
    await harness.reply(ts, "hello? any news?");
    const task = await harness.until("the task to settle again", async () => {
      const settled = await settledFailed(harness.db.db, ts);
      return settled && failureNotices(harness, ts).length >= 2 ? settled : undefined;
    });
    assert.equal((await auditEvents(harness.db.db, task.id, "task_failed")).length, 2);
    assert.equal(failureNotices(harness, ts).length, 2);
  });

  test("a reply the model refuses fails the task with one model call, not a loop of them", async () => {
    const oneAgent = parseAgentsFile(
      `
defaults:
  entry_agent: cs
agents:
  - id: cs
    name: Customer Service
    icon: ":speech_balloon:"
    tools: [lookup_order]
    instructions: Answer.
`,
      "one-agent.yml",
      demoTools,
    );
    let calls = 0;
    const script: Script = () =>
      calls++ === 0
        ? { content: "Order 1042 ships today." }
        : { status: 400, error: "This model's maximum context length is 8192 tokens." };
    const harness = await startHarness({ script, agentsFile: oneAgent });
    h = harness;
    const { ts } = await harness.mention("where is order 1042?");
    await harness.until("the answer", () => taskWithStatus(harness.db.db, ts, "done"));
    await harness.reply(ts, "and order 1043?");
    const task = await harness.until("the task to settle, failed", () =>
      settledFailed(harness.db.db, ts),
    );
    assert.equal(calls, 2, "the model was asked once for the reply");
    assert.equal((await auditEvents(harness.db.db, task.id, "task_failed")).length, 1);
    assert.equal(failureNotices(harness, ts).length, 1);
  });
});

describe("lost-start-answer", async () => {
  // A new task's accept commits, leasing the task to a run that starts once Slack has its answer,
  // and holding the task's job back until that lease would run out (2 min). Here the connection
  // drops with the COMMIT's answer: the commit is made, the run never begins, Slack gets a 500 and
  // sends the mention again, a duplicate then.

  /** pg's CommandComplete for a COMMIT: 'C', its length, the tag. */
  const COMMIT_DONE = Buffer.concat([
    Buffer.from("C"),
    Buffer.from([0, 0, 0, 11]),
    Buffer.from("COMMIT\0"),
  ]);

  /**
   * A proxy in front of the test's Postgres that, once `dropCommitOf(marker)` is called, swallows
   * the answer to the COMMIT sent on the first connection whose statements carried `marker`, and
   * cuts that connection: the transaction is committed, and Baton never hears so.
   */
  async function commitAnswerDropper(serverUrl: string) {
    const port = Number(new URL(serverUrl).port || 5432);
    const open = new Set<Socket>();
    let marker: Buffer | undefined;
    let dropped = false;
    const server = createServer((client) => {
      const upstream = connect(port, "127.0.0.1");
      let carried = false;
      for (const socket of [client, upstream]) {
        open.add(socket);
        socket.on("close", () => open.delete(socket));
        socket.on("error", () => {});
      }
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on("data", (chunk: Buffer) => {
        if (marker && chunk.includes(marker)) carried = true;
        upstream.write(chunk);
      });
      upstream.on("data", (chunk: Buffer) => {
        if (carried && !dropped && chunk.includes(COMMIT_DONE)) {
          dropped = true;
          end();
          return;
        }
        client.write(chunk);
      });
      client.on("close", end);
      upstream.on("close", end);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port: own } = server.address() as { port: number };
    return {
      urlOf(url: string): string {
        const parsed = new URL(url);
        parsed.searchParams.delete("host");
        parsed.hostname = "127.0.0.1";
        parsed.port = String(own);
        return parsed.toString();
      },
      dropCommitOf(text: string) {
        marker = Buffer.from(text);
      },
      get dropped() {
        return dropped;
      },
      close: () =>
        new Promise<void>((resolve) => {
          for (const socket of open) socket.destroy();
          server.close(() => resolve());
        }),
    };
  }

  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  const ANSWER = "Order 1042 left the warehouse yesterday.";

  /** The task's jobs, and when each was due and started, by the database's clock. */
  async function jobsOf(db: Db, taskId: string) {
    const { rows } = await sql<{
      state: string;
      start_after: Date;
      started_on: Date | null;
      held_back_s: number;
    }>`
    select state, start_after, started_on,
      extract(epoch from start_after - created_on)::float8 as held_back_s
    from pgboss.job where name = ${TASK_QUEUE} and data->>'taskId' = ${taskId}
    order by created_on`.execute(db);
    return rows;
  }

  test("a mention whose accept lost the COMMIT's answer: Slack's retry runs the task now, once", async () => {
    const proxy = await commitAnswerDropper(await testServerUrl());
    cleanups.push(proxy.close);
    const h = await startHarness({ databaseUrl: proxy.urlOf, script: () => ({ content: ANSWER }) });
    cleanups.push(h.close);

    proxy.dropCommitOf("where is order 1042, the lost one?");
    const first = await h.mention("where is order 1042, the lost one?");
    assert.ok(proxy.dropped, "the COMMIT's answer was dropped");
    assert.equal(first.status, 500, "Slack saw no answer, so it sends the mention again");
    const task = await taskOfThread(h.db.db, first.ts);
    assert.ok(task, "the task was committed all the same");
    assert.equal(task.status, "active");
    assert.equal(task.lease_owner, null, "the lease of the run that never began is given up");
    const [held] = await jobsOf(h.db.db, task.id);
    assert.ok(held && held.state === "created" && held.held_back_s > 60, "its job is held back");
    assert.equal(h.model.requests.length, 0, "no run began");

    const retried = await h.mention("where is order 1042, the lost one?", {
      ts: first.ts,
      eventId: first.eventId,
      retryNum: 1,
    });
    assert.equal(retried.status, 200);
    await h.until(
      "the answer in the thread",
      async () => h.slack.messagesIn(CHANNEL, first.ts).some((m) => m.text === ANSWER) || undefined,
    );
    await h.until("the task to finish", () => finishedTask(h.db.db, first.ts));
    const jobs = await h.until("the job to complete", async () => {
      const rows = await jobsOf(h.db.db, task.id);
      return rows.every((j) => j.state === "completed") ? rows : undefined;
    });
    assert.equal(jobs.length, 1, "the held-back job ran; no other was queued");
    const startedOn = jobs[0]?.started_on;
    assert.ok(
      startedOn && startedOn < held.start_after,
      "brought forward by the retry, not run when it came due",
    );
    assert.equal(h.model.requests.length, 1, "the task ran once");
  });

  test("a new task's twin `message` event wakes nothing; Slack's retry of the mention does", async () => {
    const proxy = await commitAnswerDropper(await testServerUrl());
    cleanups.push(proxy.close);
    const h = await startHarness({ databaseUrl: proxy.urlOf, script: () => ({ content: ANSWER }) });
    cleanups.push(h.close);

    // The one state the wake-up check changes anything in: active, unleased, its job held back.
    proxy.dropCommitOf("where is order 1042, the twin's?");
    const first = await h.mention("where is order 1042, the twin's?");
    assert.equal(first.status, 500);
    const task = await taskOfThread(h.db.db, first.ts);
    assert.ok(task && task.status === "active" && task.lease_owner === null);
    const held = await jobsOf(h.db.db, task.id);
    const [heldJob] = held;
    assert.ok(heldJob?.state === "created" && heldJob.held_back_s > 60, "its job is held back");

    // Slack's `message` event for the same mention, sent once on its own: not a retry.
    const twin = messageEvent({
      user: REQUESTER,
      channel: CHANNEL,
      text: "<@U0BATONBOT> where is order 1042, the twin's?",
      ts: first.ts,
    });
    const delivered = await deliverEvent(h.endpoint, SIGNING_SECRET, twin, {
      eventId: `${first.eventId}-twin`,
    });
    assert.equal(delivered.status, 200);
    assert.deepEqual(await jobsOf(h.db.db, task.id), held, "its job is still held back");

    const retried = await h.mention("where is order 1042, the twin's?", {
      ts: first.ts,
      eventId: first.eventId,
      retryNum: 1,
    });
    assert.equal(retried.status, 200);
    await h.until("the task to finish", () => finishedTask(h.db.db, first.ts));
    const jobs = await jobsOf(h.db.db, task.id);
    assert.equal(jobs.length, 1);
    const startedOn = jobs[0]?.started_on;
    assert.ok(startedOn && startedOn < heldJob.start_after, "brought forward by the retry");
    assert.equal(h.model.requests.length, 1, "the task ran once");
  });

  test("a mention whose accept lost the COMMIT's answer, and Slack's retry never came: the sweep runs the task now", async () => {
    const proxy = await commitAnswerDropper(await testServerUrl());
    cleanups.push(proxy.close);
    const h = await startHarness({ databaseUrl: proxy.urlOf, script: () => ({ content: ANSWER }) });
    cleanups.push(h.close);

    proxy.dropCommitOf("where is order 1042, never sent again?");
    const first = await h.mention("where is order 1042, never sent again?");
    assert.equal(first.status, 500);
    const task = await taskOfThread(h.db.db, first.ts);
    assert.ok(task && task.status === "active" && task.lease_owner === null);
    const [held] = await jobsOf(h.db.db, task.id);
    assert.ok(held?.state === "created" && held.held_back_s > 60, "its job is held back");

    // Slack gave up on the event (or its retries went to a replica that failed): the sweep is left.
    await runMaintenance(h.baton.deps);
    const [swept] = await jobsOf(h.db.db, task.id);
    assert.ok(
      swept && swept.start_after < held.start_after,
      "the sweep brought the held-back job forward",
    );
    await h.until("the task to finish", () => finishedTask(h.db.db, first.ts));
    const jobs = await h.until("the job to complete", async () => {
      const rows = await jobsOf(h.db.db, task.id);
      return rows.every((j) => j.state === "completed") ? rows : undefined;
    });
    assert.equal(jobs.length, 1, "the held-back job ran; the sweep queued no other");
    assert.equal(h.model.requests.length, 1, "the task ran once");
  });

  test("a reply whose accept lost its connection gives up no lease: it started no task", async () => {
    const proxy = await startPostgresProxy(await testServerUrl());
    cleanups.push(proxy.close);
    const warned: { msg?: string }[] = [];
    const h = await startHarness({
      databaseUrl: proxy.urlOf,
      script: () => ({ content: ANSWER }),
      log: createLogger({
        level: "warn",
        destination: { write: (line: string) => void warned.push(JSON.parse(line)) },
      }),
    });
    cleanups.push(h.close);
    const { ts } = await h.mention("where is order 1042?");
    await h.until("the task to finish", () => finishedTask(h.db.db, ts));

    proxy.cut();
    const replied = await h.reply(ts, "and order 1043?");
    proxy.restore();
    assert.equal(replied.status, 500, "Slack sends the reply again");
    assert.ok(
      !warned.some((l) => l.msg === "could not give up the lease of a failed start"),
      "no lease of a start that never was is given up, nor its failure logged",
    );
  });

  test("Slack's retry of a mention whose run holds its lease leaves the run alone", async () => {
    let arrived!: () => void;
    const asked = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    let release!: () => void;
    const answered = new Promise<void>((resolve) => {
      release = resolve;
    });
    const h = await startHarness({
      script: async () => {
        arrived();
        await answered;
        return { content: ANSWER };
      },
    });
    cleanups.push(h.close);
    // First, should the test fail before it lets the model answer: the run would wait forever.
    cleanups.push(async () => release());

    const first = await h.mention("where is order 1042?");
    assert.equal(first.status, 200);
    await asked;
    const task = await taskOfThread(h.db.db, first.ts);
    assert.ok(task?.lease_owner, "the run started at the accept holds the task");
    const before = await jobsOf(h.db.db, task.id);
    // As if Slack had not seen the answer: the same event again, and the mention's twin.
    const retried = await h.mention("where is order 1042?", {
      ts: first.ts,
      eventId: first.eventId,
      retryNum: 1,
    });
    assert.equal(retried.status, 200);
    const twin = messageEvent({
      user: REQUESTER,
      channel: CHANNEL,
      text: "<@U0BATONBOT> where is order 1042?",
      ts: first.ts,
    });
    const twinEventId = `${first.eventId}-twin`;
    assert.equal(
      (await deliverEvent(h.endpoint, SIGNING_SECRET, twin, { eventId: twinEventId })).status,
      200,
    );
    // Nor does the sweep, which finds the task held.
    await runMaintenance(h.baton.deps);
    assert.deepEqual(await jobsOf(h.db.db, task.id), before, "its job is still held back");

    release();
    await h.until("the task to finish", () => finishedTask(h.db.db, first.ts));
    assert.equal(h.model.requests.length, 1, "one run asked the model");
    const jobs = await h.until("the job to be marked done", async () => {
      const rows = await jobsOf(h.db.db, task.id);
      return rows.every((j) => j.state === "completed") ? rows : undefined;
    });
    assert.deepEqual(
      jobs.map((j) => j.started_on),
      [null],
      "done by the run while still queued: no worker ran it",
    );
  });
});
