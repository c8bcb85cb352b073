import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CompiledQuery } from "kysely";
import { openLane } from "../../src/db/database.ts";
import type { TaskRow } from "../../src/db/schema.ts";
import { taskAfterTurn } from "../../src/db/task-after-turn.ts";
import { findTask, lockTaskForTurn } from "../../src/db/tasks.repository.ts";
import { consumeInputs, insertInput, loadTurn } from "../../src/db/turn-reads.repository.ts";
import {
  isTurnMovedOn,
  type TurnRecords,
  writeTurn,
} from "../../src/db/turn-records.repository.ts";
import { databaseForFile, insertOrderTask } from "../support/db.ts";

// A turn's statements: the lock it takes, the one statement that writes it, and the lane that
// sends turns one behind another. One suite per former test file.

describe("turn-lock", async () => {
  const t = databaseForFile();

  const newTask = (thread: string) => insertOrderTask(t.db, thread);

  test("a turn's lock extends the lease at the step it read, and finds nothing once it moved on", async () => {
    const task = await newTask("400.1");
    const before = Date.now();
    const locked = await t.db
      .transaction()
      .execute((tx) => lockTaskForTurn(tx, task.id, 0, "worker-a", 60_000));
    assert.deepEqual(locked, {
      status: "active",
      owner_kind: "agent",
      tokens: 0,
      cost_usd: "0.000000",
    });
    const leased = await findTask(t.db, task.id);
    assert.equal(leased?.lease_owner, "worker-a");
    const until = leased?.lease_until?.getTime() ?? 0;
    assert.ok(until >= before + 59_000 && until <= Date.now() + 61_000, "leased for a minute");

    await t.db.updateTable("tasks").set({ step_no: 1 }).where("id", "=", task.id).execute();
    const moved = await t.db
      .transaction()
      .execute((tx) => lockTaskForTurn(tx, task.id, 0, "worker-b", 60_000));
    assert.equal(moved, undefined);
    assert.equal((await findTask(t.db, task.id))?.lease_owner, "worker-a");
  });

  test("the replies a turn read are consumed together; one that came later is not", async () => {
    const task = await newTask("400.2");
    const reply = (text: string) =>
      t.db
        .transaction()
        .execute((tx) => insertInput(tx, { taskId: task.id, authorId: "U0DANA", text }));
    await reply("first");
    await reply("second");
    const read = (await loadTurn(t.db, task.id))?.inputs ?? [];
    assert.deepEqual(
      read.map((i) => i.text),
      ["first", "second"],
    );
    await reply("third");
    await t.db.transaction().execute((tx) =>
      consumeInputs(
        tx,
        read.map((i) => i.id),
        1,
      ),
    );
    assert.deepEqual(
      (await loadTurn(t.db, task.id))?.inputs.map((i) => i.text),
      ["third"],
    );
    const consumed = await t.db
      .selectFrom("task_inputs")
      .select(["text", "consumed_at_step"])
      .where("task_id", "=", task.id)
      .orderBy("id")
      .execute();
    assert.deepEqual(
      consumed.map((i) => [i.text, i.consumed_at_step]),
      [
        ["first", 1],
        ["second", 1],
        ["third", null],
      ],
    );
  });

  test("a turn's lock finds nothing while another run holds the task, and takes a lease run out", async () => {
    const task = await newTask("400.3");
    const lock = (worker: string) =>
      t.db.transaction().execute((tx) => lockTaskForTurn(tx, task.id, 0, worker, 60_000));
    // worker-b took the task over when worker-a's lease ran out: worker-a's late turn is dropped.
    await t.db
      .updateTable("tasks")
      .set({ lease_owner: "worker-b", lease_until: new Date(Date.now() + 60_000) })
      .where("id", "=", task.id)
      .execute();
    assert.equal(await lock("worker-a"), undefined);
    assert.equal((await findTask(t.db, task.id))?.lease_owner, "worker-b");
    // worker-b's lease ran out in turn, and nobody took it: worker-a may go on.
    await t.db
      .updateTable("tasks")
      .set({ lease_until: new Date(Date.now() - 1_000) })
      .where("id", "=", task.id)
      .execute();
    assert.ok(await lock("worker-a"));
    assert.equal((await findTask(t.db, task.id))?.lease_owner, "worker-a");
  });
});

describe("write-turn", async () => {
  const t = databaseForFile();

  const newTask = (thread: string) => insertOrderTask(t.db, thread);

  /** Customer Service hands to Fulfillment; `at` is where the task stands when the turn began. */
  function handoffTurn(
    taskId: string,
    expectedStep: number,
    at = { owner: "customer-service", stint: 1 },
  ): TurnRecords {
    const stepNo = expectedStep + 1;
    const intent = (reason: string) =>
      ({ kind: "failure_notice", channel: "C0ORDERS", threadTs: "1.1", taskId, reason }) as const;
    return {
      taskId,
      changes: {
        stepNo,
        owner: { kind: "agent", id: "fulfillment" },
        hop: true,
        newStint: true,
        addTokens: 15,
        addCostUsd: 0.001,
      },
      modelCall: {
        taskId,
        stepNo,
        agentId: "customer-service",
        model: "gpt-4o-mini",
        promptTokens: 10,
        completionTokens: 5,
        costUsd: 0.001,
        latencyMs: 3,
        requestChars: 120,
        outcome: "transfer",
      },
      conversation: [
        {
          taskId,
          stintNo: 2,
          stepNo,
          message: { role: "user", content: "Handoff from Customer Service: order 1042 is stuck" },
        },
      ],
      toolCalls: [],
      handoffs: [
        {
          taskId,
          stepNo,
          kind: "transfer",
          from: { kind: "agent", id: "customer-service" },
          to: { kind: "agent", id: "fulfillment" },
          note: { summary: "order 1042 is stuck" },
        },
      ],
      audits: [{ taskId, actor: { kind: "agent", id: "customer-service" }, kind: "handoff" }],
      outbox: [
        { taskId, intent: intent("a") },
        { taskId, intent: intent("b") },
      ],
      delivered: [],
      arrivalsOf: "customer-service",
      lease: {
        expectedStep,
        expectedOwner: at.owner,
        expectedStint: at.stint,
        worker: "worker-a",
        ms: 60_000,
      },
    };
  }

  test("a turn's statement writes everything, returns the task as it now is and the outbox ids in order", async () => {
    const task = await newTask("1700000000.000001");
    const written = await t.db
      .transaction()
      .execute((tx) => writeTurn(tx, handoffTurn(task.id, 0)));
    assert.ok(written);
    assert.equal(written.task.step_no, 1);
    assert.equal(written.task.owner_id, "fulfillment");
    assert.equal(written.task.stint_no, 2);
    assert.equal(written.task.hop_count, 1);
    assert.equal(written.task.tokens, 15);
    assert.equal(written.task.lease_owner, "worker-a");
    assert.equal(written.hasNewInputs, false);
    const outbox = await t.db
      .selectFrom("slack_outbox")
      .select(["id", "payload"])
      .orderBy("id")
      .execute();
    assert.deepEqual(
      written.outboxIds,
      outbox.map((r) => String(r.id)),
    );
    assert.deepEqual(
      outbox.map((r) => (r.payload as { intent: { reason: string } }).intent.reason),
      ["a", "b"],
    );
    const handoffs = await t.db
      .selectFrom("handoffs")
      .select("to_id")
      .where("task_id", "=", task.id)
      .execute();
    assert.deepEqual(handoffs, [{ to_id: "fulfillment" }]);

    // The next turn marks the delivered rows sent in its own statement.
    const next = handoffTurn(task.id, 1, { owner: "fulfillment", stint: 2 });
    const marked = await t.db.transaction().execute((tx) =>
      writeTurn(tx, {
        ...next,
        outbox: [],
        delivered: written.outboxIds.map((id, i) => ({ id, slackTs: `1700000000.00010${i}` })),
      }),
    );
    assert.ok(marked);
    const sent = await t.db
      .selectFrom("slack_outbox")
      .select(["status", "slack_ts"])
      .orderBy("id")
      .execute();
    assert.deepEqual(sent, [
      { status: "sent", slack_ts: "1700000000.000100" },
      { status: "sent", slack_ts: "1700000000.000101" },
    ]);
  });

  test("a turn whose step moved on gets no task back, writes nothing of its own, and a reply waiting is reported", async () => {
    const task = await newTask("1700000000.000002");
    // Outside a transaction, as a turn that only reads or hands over runs: the statement itself
    // must keep every row of a stale turn out.
    const stale = await writeTurn(t.db, handoffTurn(task.id, 5));
    assert.equal(stale, undefined);
    const count = async (
      table: "model_calls" | "conversation" | "handoffs" | "audit_events" | "slack_outbox",
    ) =>
      (await t.db.selectFrom(table).select("id").where("task_id", "=", task.id).execute()).length;
    for (const table of [
      "model_calls",
      "conversation",
      "handoffs",
      "audit_events",
      "slack_outbox",
    ] as const)
      assert.equal(await count(table), 0, `no ${table} row of the stale turn`);
    const row = await t.db
      .selectFrom("tasks")
      .selectAll()
      .where("id", "=", task.id)
      .executeTakeFirstOrThrow();
    assert.equal(row.step_no, 0, "the task is as it was");
    assert.equal(row.owner_id, "customer-service");

    await t.db
      .transaction()
      .execute((tx) => insertInput(tx, { taskId: task.id, authorId: "U0DANA", text: "any news?" }));
    const written = await t.db
      .transaction()
      .execute((tx) => writeTurn(tx, handoffTurn(task.id, 0)));
    assert.equal(written?.hasNewInputs, true, "the next turn must read the reply");
  });

  test("a turn written last in its transaction commits with it, or fails and rolls the transaction back when its step moved on", async () => {
    const task = await newTask("1700000000.000003");
    const inputs = async () =>
      (await t.db.selectFrom("task_inputs").select("id").where("task_id", "=", task.id).execute())
        .length;
    // A stale turn: what its transaction wrote before it (here, a reply) is rolled back with it.
    const error = await t.db
      .transaction()
      .execute(async (tx) => {
        await insertInput(tx, { taskId: task.id, authorId: "U0DANA", text: "any news?" });
        return writeTurn(tx, handoffTurn(task.id, 5), { last: true });
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    assert.ok(isTurnMovedOn(error), `the task moved on: ${String(error)}`);
    assert.equal(await inputs(), 0, "the whole transaction is rolled back");

    const written = await t.db.transaction().execute(async (tx) => {
      await insertInput(tx, { taskId: task.id, authorId: "U0DANA", text: "any news?" });
      return writeTurn(tx, handoffTurn(task.id, 0), { last: true });
    });
    assert.equal(written?.task.step_no, 1);
    assert.equal(written?.task.owner_id, "fulfillment");
    assert.equal(await inputs(), 1, "committed together");
  });
});

describe("turn-lane", async () => {
  const t = databaseForFile();

  const newTask = (thread: string) => insertOrderTask(t.db, thread);

  /** A turn of the agent that owns `task` now, changing what `changes` says. */
  function turnOf(
    task: TaskRow,
    changes: TurnRecords["changes"],
    worker = "worker-a",
  ): TurnRecords {
    const stepNo = task.step_no + 1;
    return {
      taskId: task.id,
      changes: { stepNo, addTokens: 15, addCostUsd: 0.000125, ...changes },
      modelCall: {
        taskId: task.id,
        stepNo,
        agentId: task.owner_id,
        model: "gpt-4o-mini",
        promptTokens: 10,
        completionTokens: 5,
        costUsd: 0.000125,
        latencyMs: 3,
        requestChars: 120,
        outcome: "tool",
      },
      conversation: [],
      toolCalls: [],
      handoffs: [],
      audits: [],
      outbox: [],
      delivered: [],
      lease: {
        expectedStep: task.step_no,
        expectedOwner: task.owner_id,
        expectedStint: task.stint_no,
        worker,
        ms: 60_000,
      },
    };
  }

  // What the statement returns but a prediction cannot know to the microsecond, or sums in floats.
  const UNPREDICTABLE = ["last_activity_at", "lease_until", "closed_at", "cost_usd"] as const;

  function withoutClock(row: TaskRow) {
    const rest: Partial<TaskRow> = { ...row };
    for (const key of UNPREDICTABLE) delete rest[key];
    return rest;
  }

  test("the state a turn written behind predicts is the row its statement returns", async () => {
    let task = await newTask("1700000001.000001");
    const turns: TurnRecords["changes"][] = [
      {},
      {
        owner: { kind: "agent", id: "fulfillment" },
        hop: true,
        newStint: true,
        handbackStack: ["customer-service"],
        facts: { order_id: "1042", sku: "LAMP-OAK", nested: { zeta: 1, a: [{ bb: 2, a: 1 }] } },
      },
      { urgency: "high", modelErrors: 1 },
      {
        owner: { kind: "agent", id: "customer-service" },
        newStint: true,
        handbackStack: [],
        facts: { sku: "LAMP-OAK", order_id: "1042", on_hand: 14, order_status: "shipped" },
        modelErrors: 0,
      },
      { status: "done" },
    ];
    for (const changes of turns) {
      const records = turnOf(task, changes);
      const predicted = taskAfterTurn(task, records, new Date());
      const written = await writeTurn(t.db, records);
      assert.ok(written, "the turn is written");
      assert.deepEqual(withoutClock(predicted), withoutClock(written.task));
      // The facts in the order jsonb keeps them, so the prompt reads the same from either.
      assert.equal(JSON.stringify(predicted.facts), JSON.stringify(written.task.facts));
      assert.ok(Math.abs(Number(predicted.cost_usd) - Number(written.task.cost_usd)) < 1e-9);
      assert.equal(predicted.closed_at === null, written.task.closed_at === null);
      task = written.task;
    }
    assert.equal(task.status, "done");
  });

  test("a turn given the wrong owner or stint, or whose task another run holds, writes nothing", async () => {
    const task = await newTask("1700000001.000002");
    const wrongOwner = turnOf({ ...task, owner_id: "fulfillment" }, {});
    assert.equal(await writeTurn(t.db, wrongOwner), undefined);
    const wrongStint = turnOf({ ...task, stint_no: 2 }, {});
    assert.equal(await writeTurn(t.db, wrongStint), undefined);

    // Another run took the task over (this run's lease ran out): its lease is live.
    await t.db
      .updateTable("tasks")
      .set({ lease_owner: "worker-b/1", lease_until: new Date(Date.now() + 60_000) })
      .where("id", "=", task.id)
      .execute();
    assert.equal(await writeTurn(t.db, turnOf(task, {}, "worker-a/1")), undefined);
    const held = await writeTurn(t.db, turnOf(task, {}, "worker-b/1"));
    assert.equal(held?.task.step_no, 1, "the run holding the lease writes");

    // A lease that ran out with nobody taking the task over still lets its run write.
    await t.db
      .updateTable("tasks")
      .set({ lease_until: new Date(Date.now() - 1000) })
      .where("id", "=", task.id)
      .execute();
    const late = await writeTurn(t.db, turnOf(held.task, {}, "worker-a/1"));
    assert.equal(late?.task.step_no, 2);
    assert.equal(late?.task.lease_owner, "worker-a/1");
    const modelCalls = await t.db
      .selectFrom("model_calls")
      .select("step_no")
      .where("task_id", "=", task.id)
      .orderBy("step_no")
      .execute();
    assert.deepEqual(modelCalls, [{ step_no: 1 }, { step_no: 2 }]);
  });

  test("a lane sends statements on one connection, Postgres runs them in order, and it holds no connection when idle", async () => {
    const task = await newTask("1700000001.000003");
    const lane = openLane(t.db);
    // Sent together, behind a slow one: the pool would spread them over connections; the lane keeps
    // them on one, so Postgres sees them in the order sent.
    const pids = await Promise.all([
      lane.send<{ pid: number }>(
        CompiledQuery.raw("select pg_backend_pid() as pid, pg_sleep(0.05)", []),
      ),
      ...[1, 2, 3].map(() =>
        lane.send<{ pid: number }>(CompiledQuery.raw("select pg_backend_pid() as pid", [])),
      ),
    ]);
    assert.equal(new Set(pids.map((r) => r.rows[0]?.pid)).size, 1, "one connection");
    // Five turns, each sent before the one before has answered: each finds the step the one
    // before left, so all are written, in order.
    let state = task;
    const sent: Promise<unknown>[] = [];
    for (let i = 0; i < 5; i++) {
      const records = turnOf(state, {});
      sent.push(writeTurn(lane, records));
      state = taskAfterTurn(state, records, new Date());
    }
    const results = await Promise.all(sent);
    assert.ok(results.every(Boolean), "every turn written");
    assert.equal(state.step_no, 5);
    // One sent behind a turn that writes nothing (its step is wrong) writes nothing either.
    const stale = turnOf({ ...state, step_no: 9 }, {});
    const behind = turnOf(taskAfterTurn({ ...state, step_no: 9 }, stale, new Date()), {});
    const [a, b] = await Promise.all([writeTurn(lane, stale), writeTurn(lane, behind)]);
    assert.equal(a, undefined);
    assert.equal(b, undefined);
    await lane.idle();
    assert.equal(t.pool.totalCount - t.pool.idleCount, 0, "the lane gave its connection back");

    // An SQL error answers its own statement; the lane goes on.
    const failing = lane.send(CompiledQuery.raw("select 1 / $1::int as x", [0]));
    const next = lane.send<{ x: number }>(CompiledQuery.raw("select 2 as x", []));
    await assert.rejects(failing, /division by zero/);
    assert.deepEqual((await next).rows, [{ x: 2 }]);
    await lane.idle();
    const steps = await t.db
      .selectFrom("model_calls")
      .select("step_no")
      .where("task_id", "=", task.id)
      .orderBy("step_no")
      .execute();
    assert.deepEqual(
      steps.map((s) => s.step_no),
      [1, 2, 3, 4, 5],
      "the five turns, in order, and nothing of the stale two",
    );
  });
});
