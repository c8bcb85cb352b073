import assert from "node:assert/strict";
import { test } from "node:test";
import { CompiledQuery } from "kysely";
import { openLane } from "../../src/db/database.ts";
import type { TaskRow } from "../../src/db/schema.ts";
import { taskAfterTurn } from "../../src/db/task-after-turn.ts";
import { type TurnRecords, writeTurn } from "../../src/db/turn-records.repository.ts";
import { databaseForFile, insertOrderTask } from "../support/db.ts";

const t = databaseForFile();

const newTask = (thread: string) => insertOrderTask(t.db, thread);

/** A turn of the agent that owns `task` now, changing what `changes` says. */
function turnOf(task: TaskRow, changes: TurnRecords["changes"], worker = "worker-a"): TurnRecords {
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
