import assert from "node:assert/strict";
import { test } from "node:test";
import { findTask, lockTaskForTurn } from "../../src/db/tasks.repository.ts";
import { consumeInputs, insertInput, loadTurn } from "../../src/db/turn-reads.repository.ts";
import { databaseForFile, insertOrderTask } from "../support/db.ts";

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
