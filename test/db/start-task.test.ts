import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";
import { receiveMessage } from "../../src/db/events.repository.ts";
import { ownershipHistory } from "../../src/db/ledger.repository.ts";
import { findTaskByThread, startTask } from "../../src/db/tasks.repository.ts";
import { insertInput, loadTurn } from "../../src/db/turn-reads.repository.ts";
import { databaseForFile } from "../support/db.ts";

const t = databaseForFile();

function start(id: string, thread: string) {
  return {
    id,
    task: {
      channelId: "C0ORDERS",
      threadTs: thread,
      requesterId: "U0DANA",
      title: "where is order 1042?",
      requestText: "where is order 1042?",
      owner: { kind: "agent" as const, id: "customer-service" },
    },
    conversation: [
      {
        taskId: id,
        stintNo: 1,
        stepNo: 0,
        message: { role: "user" as const, content: "where is order 1042?" },
      },
    ],
    handoff: {
      taskId: id,
      stepNo: 0,
      kind: "start" as const,
      from: { kind: "human", id: "U0DANA" },
      to: { kind: "agent", id: "customer-service" },
      note: { request: "where is order 1042?" },
    },
    audits: [
      {
        taskId: id,
        actor: { kind: "human" as const, id: "U0DANA" },
        kind: "message_received",
        data: { text: "where is order 1042?" },
      },
      {
        taskId: id,
        actor: { kind: "system" as const, id: "baton" },
        kind: "task_started",
        data: { agent: "customer-service" },
      },
    ],
  };
}

function receipt(keys: string[], newTaskId: string) {
  return { channel: "C0ORDERS", threadTs: "200.1", keys, newTaskId, starts: true };
}

test("a task starts in one statement with its conversation, handoff and audit events", async () => {
  const id = randomUUID();
  await t.db.transaction().execute(async (tx) => {
    const received = await receiveMessage(tx, receipt(["event:Ev1", "message:C0ORDERS:200.1"], id));
    assert.deepEqual(received, { task: undefined, fresh: true });
    await startTask(tx, start(id, "200.1"));
  });
  const task = await findTaskByThread(t.db, "C0ORDERS", "200.1");
  assert.equal(task?.id, id);
  assert.equal(task?.status, "active");
  assert.equal(task?.owner_id, "customer-service");
  assert.equal(task?.step_no, 0);
  assert.deepEqual(task?.handback_stack, []);
  assert.deepEqual(task?.facts, {});
  assert.deepEqual((await loadTurn(t.db, id))?.history, [
    { role: "user", content: "where is order 1042?" },
  ]);
  assert.deepEqual(
    (await ownershipHistory(t.db, id)).map((h) => [h.kind, h.from_id, h.to_id]),
    [["start", "U0DANA", "customer-service"]],
  );
  const audits = await t.db
    .selectFrom("audit_events")
    .select("kind")
    .where("task_id", "=", id)
    .orderBy("id")
    .execute();
  assert.deepEqual(
    audits.map((a) => a.kind),
    ["message_received", "task_started"],
  );
  const events = await t.db.selectFrom("slack_events").selectAll().orderBy("event_id").execute();
  assert.deepEqual(
    events.map((e) => [e.event_id, e.task_id]),
    [
      ["event:Ev1", id],
      ["message:C0ORDERS:200.1", id],
    ],
  );
});

test("a message seen before under any of its keys is reported, and its transaction rolled back", async () => {
  const twin = randomUUID();
  await assert.rejects(
    t.db.transaction().execute(async (tx) => {
      const received = await receiveMessage(
        tx,
        receipt(["event:Ev2", "message:C0ORDERS:200.1"], twin),
      );
      assert.equal(received.task?.thread_ts, "200.1", "the thread's task, started by its twin");
      if (!received.fresh) throw new Error("duplicate");
      await startTask(tx, start(twin, "200.1"));
    }),
    /duplicate/,
  );
  const rows = await t.db
    .selectFrom("slack_events")
    .select("event_id")
    .where("event_id", "=", "event:Ev2")
    .execute();
  assert.deepEqual(rows, []);
});

test("a message in a thread that is not a task, starting none, is not recorded", async () => {
  const received = await t.db.transaction().execute((tx) =>
    receiveMessage(tx, {
      channel: "C0ORDERS",
      threadTs: "300.1",
      keys: ["event:Ev3", "message:C0ORDERS:300.2"],
      newTaskId: randomUUID(),
      starts: false,
    }),
  );
  assert.deepEqual(received, { task: undefined, fresh: false });
  const rows = await t.db
    .selectFrom("slack_events")
    .select("event_id")
    .where("event_id", "=", "event:Ev3")
    .execute();
  assert.deepEqual(rows, []);
});

test("a reply is stored with its audit event in one statement", async () => {
  const task = await findTaskByThread(t.db, "C0ORDERS", "200.1");
  assert.ok(task);
  await t.db.transaction().execute((tx) =>
    insertInput(tx, { taskId: task.id, authorId: "U0LEE", text: "any news?" }, [
      {
        taskId: task.id,
        actor: { kind: "human", id: "U0LEE" },
        kind: "message_received",
        data: { text: "any news?", ts: "200.2" },
      },
    ]),
  );
  assert.deepEqual(
    (await loadTurn(t.db, task.id))?.inputs.map((i) => [i.author_id, i.text]),
    [["U0LEE", "any news?"]],
  );
  const audits = await t.db
    .selectFrom("audit_events")
    .select(["kind", "actor_id"])
    .where("task_id", "=", task.id)
    .orderBy("id")
    .execute();
  assert.deepEqual(audits.at(-1), { kind: "message_received", actor_id: "U0LEE" });
});

test("a task run where it was accepted starts leased, in its transaction's last statement", async () => {
  const id = randomUUID();
  const base = start(id, "500.1");
  const before = Date.now();
  const task = await t.db.transaction().execute((tx) =>
    startTask(tx, {
      ...base,
      lease: { worker: "worker-a/1", ms: 30_000 },
      last: true,
      conversation: [
        ...base.conversation,
        { taskId: id, stintNo: 1, stepNo: 0, message: { role: "user", content: "and 1043?" } },
      ],
    }),
  );
  assert.equal(task.id, id);
  assert.equal(task.lease_owner, "worker-a/1");
  const until = task.lease_until?.getTime() ?? 0;
  assert.ok(until >= before + 29_000 && until <= Date.now() + 31_000, "leased for 30 s");
  assert.deepEqual(await findTaskByThread(t.db, "C0ORDERS", "500.1"), task);
  assert.deepEqual((await loadTurn(t.db, id))?.history, [
    { role: "user", content: "where is order 1042?" },
    { role: "user", content: "and 1043?" },
  ]);
  const audits = await t.db
    .selectFrom("audit_events")
    .select(["kind", "data"])
    .where("task_id", "=", id)
    .orderBy("id")
    .execute();
  assert.deepEqual(audits, [
    { kind: "message_received", data: { text: "where is order 1042?" } },
    { kind: "task_started", data: { agent: "customer-service" } },
  ]);
});
