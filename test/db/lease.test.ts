import assert from "node:assert/strict";
import { test } from "node:test";
import { insertApproval } from "../../src/db/approvals.repository.ts";
import {
  claimLease,
  findOrphanedTasks,
  lockOrphanedTask,
  releaseLease,
  renewLease,
} from "../../src/db/lease.repository.ts";
import { insertToolCall } from "../../src/db/ledger.repository.ts";
import { findTask, lockHeldTask, lockTask } from "../../src/db/tasks.repository.ts";
import { insertInput, loadTurn } from "../../src/db/turn-reads.repository.ts";
import { databaseForFile, insertAskedOrderTask, waitingOnLocks } from "../support/db.ts";

const t = databaseForFile();

const newTask = (thread: string) => insertAskedOrderTask(t.db, thread);

/** A refund call parked for approval, as a turn that asked for it leaves it. */
async function parkedRefund(taskId: string, key: string) {
  await t.db.transaction().execute(async (tx) => {
    await insertToolCall(tx, {
      taskId,
      stepNo: 1,
      agentId: "billing",
      tool: "issue_refund",
      toolClass: "irreversible",
      args: { order_id: "1077" },
      idempotencyKey: key,
      status: "pending_approval",
      result: null,
      allowedBy: null,
    });
    await insertApproval(tx, {
      taskId,
      stepNo: 1,
      toolCallId: key,
      modelCallId: `model-${key}`,
      agentId: "billing",
      tool: "issue_refund",
      args: { order_id: "1077" },
      policyId: "refunds",
      requesterId: "U0DANA",
      approvers: { users: ["U0LEE"], groups: [] },
      fallback: undefined,
      expiresInMs: 60_000,
    });
  });
}

/** Holds the task's row locked, as a write tool's transaction does, while `during` runs. */
async function whileLocked<T>(taskId: string, during: () => Promise<T>): Promise<T> {
  return t.db.transaction().execute(async (tx) => {
    assert.ok(await lockTask(tx, taskId));
    return during();
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function outboxRow(taskId: string) {
  const row = await t.db
    .insertInto("slack_outbox")
    .values({ task_id: taskId, method: "post", payload: JSON.stringify({}) })
    .returning("id")
    .executeTakeFirstOrThrow();
  return row.id;
}

test("a claim returns what the first turn reads, as loadTurn would", async () => {
  const task = await newTask("100.1");
  const claim = await claimLease(t.db, task.id, "worker-a", 60_000);
  assert.ok(claim);
  assert.equal(claim.undelivered, false);
  assert.equal(claim.decided, false);
  assert.deepEqual(claim.turn.history, [{ role: "user", content: "where?" }]);
  assert.deepEqual(claim.turn.inputs, []);
  assert.equal(claim.turn.task.lease_owner, "worker-a");
  assert.deepEqual(claim.turn, await loadTurn(t.db, task.id));

  // Another worker cannot claim a live lease; the holder can claim again.
  assert.equal(await claimLease(t.db, task.id, "worker-b", 60_000), undefined);
  assert.ok(await claimLease(t.db, task.id, "worker-a", 60_000));
});

test("a claim reports replies, undelivered messages and decided approvals", async () => {
  const task = await newTask("100.2");
  await t.db
    .transaction()
    .execute((tx) => insertInput(tx, { taskId: task.id, authorId: "U0LEE", text: "any news?" }));
  await parkedRefund(task.id, "call-1");
  const outboxId = await outboxRow(task.id);

  const pending = await claimLease(t.db, task.id, "worker-a", 60_000);
  assert.equal(pending?.undelivered, true);
  assert.equal(pending?.decided, false, "a pending approval is not decided");
  assert.deepEqual(
    pending?.turn.inputs.map((i) => [typeof i.id, i.author_id, i.text]),
    [["string", "U0LEE", "any news?"]],
  );

  await t.db.updateTable("approvals").set({ status: "approved" }).execute();
  assert.equal((await claimLease(t.db, task.id, "worker-a", 60_000))?.decided, true);
  await t.db.updateTable("tool_calls").set({ status: "done" }).execute();
  assert.equal((await claimLease(t.db, task.id, "worker-a", 60_000))?.decided, false);

  await t.db
    .updateTable("slack_outbox")
    .set({ status: "sent" })
    .where("id", "=", outboxId)
    .execute();
  assert.equal((await claimLease(t.db, task.id, "worker-a", 60_000))?.undelivered, false);
});

test("releasing the lease marks the delivered rows sent in the same statement", async () => {
  const task = await newTask("100.3");
  const [first, second] = [await outboxRow(task.id), await outboxRow(task.id)];
  assert.ok(await claimLease(t.db, task.id, "worker-a", 60_000));

  // Not the holder: nothing released, but rows it delivered are still marked.
  assert.equal(
    await releaseLease(t.db, task.id, "worker-b", [{ id: first, slackTs: "111.1" }]),
    undefined,
  );
  assert.equal((await findTask(t.db, task.id))?.lease_owner, "worker-a");

  const released = await releaseLease(t.db, task.id, "worker-a", [
    { id: second, slackTs: "111.2" },
  ]);
  assert.deepEqual(released, { status: "active", owner_kind: "agent" });
  const after = await findTask(t.db, task.id);
  assert.equal(after?.lease_owner, null);
  assert.equal(after?.lease_until, null);
  const rows = await t.db
    .selectFrom("slack_outbox")
    .select(["id", "status", "slack_ts"])
    .where("task_id", "=", task.id)
    .orderBy("id")
    .execute();
  assert.deepEqual(
    rows.map((r) => [r.status, r.slack_ts]),
    [
      ["sent", "111.1"],
      ["sent", "111.2"],
    ],
  );

  // With nothing to mark, it releases all the same.
  assert.ok(await claimLease(t.db, task.id, "worker-a", 60_000));
  assert.deepEqual(await releaseLease(t.db, task.id, "worker-a"), {
    status: "active",
    owner_kind: "agent",
  });
});

test("a release that reopens an ended task for a reply audits who reopened it, in the same statement", async () => {
  const task = await newTask("100.9");
  assert.ok(await claimLease(t.db, task.id, "worker-a", 60_000));
  await t.db.updateTable("tasks").set({ status: "failed" }).where("id", "=", task.id).execute();
  await t.db.transaction().execute(async (tx) => {
    await insertInput(tx, { taskId: task.id, authorId: "U0LEE", text: "any news?" });
    await insertInput(tx, { taskId: task.id, authorId: "U0DANA", text: "hello?" });
  });
  const reopened = () =>
    t.db
      .selectFrom("audit_events")
      .selectAll()
      .where("task_id", "=", task.id)
      .where("kind", "=", "task_reopened")
      .execute();
  // Not the holder: nothing reopened, nothing audited.
  await releaseLease(t.db, task.id, "worker-b");
  assert.deepEqual(await reopened(), []);

  assert.deepEqual(await releaseLease(t.db, task.id, "worker-a"), {
    status: "active",
    owner_kind: "agent",
  });
  const rows = await reopened();
  assert.deepEqual(
    rows.map((r) => [r.actor_kind, r.actor_id, r.data]),
    [["human", "U0LEE", { owner: "customer-service", owner_kind: "agent", was: "failed" }]],
  );
  // A release that reopens nothing audits nothing.
  assert.ok(await claimLease(t.db, task.id, "worker-a", 60_000));
  await releaseLease(t.db, task.id, "worker-a");
  assert.equal((await reopened()).length, 1);
});

// A reply's accept reopens an answered task (and audits it) while the run that answered it is
// releasing: the release waited on the row, then reopened it a second time from what it had read.
test("a release waiting on a reply's reopening reopens nothing more", async () => {
  const task = await newTask("100.10");
  assert.ok(await claimLease(t.db, task.id, "worker-a", 60_000));
  await t.db.updateTable("tasks").set({ status: "done" }).where("id", "=", task.id).execute();
  await t.db
    .transaction()
    .execute((tx) => insertInput(tx, { taskId: task.id, authorId: "U0DANA", text: "and now?" }));
  let release: Promise<unknown> | undefined;
  await t.db.transaction().execute(async (tx) => {
    // The accept of a second reply, holding the row: it reopens the task (and audits it).
    assert.ok(await lockTask(tx, task.id));
    await tx.updateTable("tasks").set({ status: "active" }).where("id", "=", task.id).execute();
    release = releaseLease(t.db, task.id, "worker-a");
    // The release is read only once it waits on the row: otherwise it sees the task open already.
    for (let n = 0; (await waitingOnLocks(t.db)) === 0; n++) {
      assert.ok(n < 200, "the release never waited on the row");
      await sleep(10);
    }
  });
  await release;
  const reopened = await t.db
    .selectFrom("audit_events")
    .select("id")
    .where("task_id", "=", task.id)
    .where("kind", "=", "task_reopened")
    .execute();
  assert.equal(reopened.length, 0, "the task was already open when the release could act");
});

test("a claim that waited on a decision being committed sees the decision whole", async () => {
  const task = await newTask("100.4");
  await parkedRefund(task.id, "call-4");
  await t.db
    .updateTable("tasks")
    .set({ status: "waiting_human" })
    .where("id", "=", task.id)
    .execute();
  // The decision's transaction: the approval approved and the task active again, committed while a
  // job's claim waits on the task's row.
  let claim: ReturnType<typeof claimLease> | undefined;
  await t.db.transaction().execute(async (tx) => {
    await tx.updateTable("approvals").set({ status: "approved" }).execute();
    await tx.updateTable("tasks").set({ status: "active" }).where("id", "=", task.id).execute();
    claim = claimLease(t.db, task.id, "worker-a", 60_000);
    await sleep(100);
  });
  const claimed = await claim;
  assert.equal(claimed?.turn.task.status, "active");
  assert.equal(claimed?.decided, true, "the approval decided with the status it set");
});

test("a renewal does not wait on a transaction that holds the task, and says the lease is held", async () => {
  const task = await newTask("100.5");
  assert.ok(await claimLease(t.db, task.id, "worker-a", 60_000));
  const renewed = await whileLocked(task.id, () =>
    Promise.race([
      renewLease(t.db, task.id, "worker-a", 60_000),
      sleep(5_000).then(() => "waited on the lock"),
    ]),
  );
  assert.equal(renewed, true);
  assert.equal(await renewLease(t.db, task.id, "worker-b", 60_000), false, "not worker-b's");
  // Unlocked, it extends the lease.
  await t.db
    .updateTable("tasks")
    .set({ lease_until: new Date(Date.now() + 1_000) })
    .where("id", "=", task.id)
    .execute();
  assert.equal(await renewLease(t.db, task.id, "worker-a", 60_000), true);
  const until = (await findTask(t.db, task.id))?.lease_until?.getTime() ?? 0;
  assert.ok(until > Date.now() + 50_000, "renewed for a minute");
});

test("a task whose lease ran out is not taken for orphaned while its row is locked", async () => {
  const task = await newTask("100.6");
  await t.db
    .updateTable("tasks")
    .set({ lease_owner: "worker-a", lease_until: new Date(Date.now() - 1_000) })
    .where("id", "=", task.id)
    .execute();
  const listed = async () => (await findOrphanedTasks(t.db, 1_000)).includes(task.id);
  assert.equal(await whileLocked(task.id, listed), false);
  assert.equal(await listed(), true);
});

test("settling decisions locks the task only for the run that holds it", async () => {
  const task = await newTask("100.7");
  assert.ok(await claimLease(t.db, task.id, "worker-a", 60_000));
  const lock = (worker: string) =>
    t.db.transaction().execute((tx) => lockHeldTask(tx, task.id, worker, 60_000));
  assert.equal(await lock("worker-b"), undefined);
  assert.equal((await lock("worker-a"))?.id, task.id);
});

test("the sweep locks an orphaned task only if no run holds it and no transaction locks it", async () => {
  const task = await newTask("100.8");
  const lock = () => t.db.transaction().execute((tx) => lockOrphanedTask(tx, task.id));
  assert.equal(await lock(), true);
  assert.equal(await whileLocked(task.id, lock), false, "another sweep, or a write tool, has it");
  assert.ok(await claimLease(t.db, task.id, "worker-a", 60_000));
  assert.equal(await lock(), false, "a run holds it");
});
