import assert from "node:assert/strict";
import { test } from "node:test";
import { insertInput } from "../../src/db/turn-reads.repository.ts";
import {
  isTurnMovedOn,
  type TurnRecords,
  writeTurn,
} from "../../src/db/turn-records.repository.ts";
import { databaseForFile, insertOrderTask } from "../support/db.ts";

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
  const written = await t.db.transaction().execute((tx) => writeTurn(tx, handoffTurn(task.id, 0)));
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
  ) => (await t.db.selectFrom(table).select("id").where("task_id", "=", task.id).execute()).length;
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
  const written = await t.db.transaction().execute((tx) => writeTurn(tx, handoffTurn(task.id, 0)));
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
