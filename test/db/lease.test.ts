import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { insertApproval } from "../../src/db/humans.repository.ts";
import { claimLease, releaseLease } from "../../src/db/lease.repository.ts";
import { appendConversation, insertToolCall } from "../../src/db/ledger.repository.ts";
import { findTask, insertInput, loadTurn } from "../../src/db/tasks.repository.ts";
import { createTestDatabase, insertOrderTask, type TestDatabase } from "../support/db.ts";

let t: TestDatabase;
before(async () => {
  t = await createTestDatabase();
});
after(async () => {
  await t.close();
});

async function newTask(thread: string) {
  const task = await insertOrderTask(t.db, thread);
  await t.db
    .transaction()
    .execute((tx) =>
      appendConversation(tx, [
        { taskId: task.id, stintNo: 1, stepNo: 0, message: { role: "user", content: "where?" } },
      ]),
    );
  return task;
}

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
  await t.db.transaction().execute(async (tx) => {
    await insertInput(tx, { taskId: task.id, authorId: "U0LEE", text: "any news?" });
    await insertToolCall(tx, {
      taskId: task.id,
      stepNo: 1,
      agentId: "billing",
      tool: "issue_refund",
      toolClass: "irreversible",
      args: { order_id: "1077" },
      idempotencyKey: "call-1",
      status: "pending_approval",
      result: null,
      allowedBy: null,
    });
    await insertApproval(tx, {
      taskId: task.id,
      stepNo: 1,
      toolCallId: "call-1",
      modelCallId: "model-call-1",
      agentId: "billing",
      tool: "issue_refund",
      args: { order_id: "1077" },
      policyId: "refunds",
      requesterId: "U0DANA",
      approvers: { users: ["U0LEE"], groups: [] },
      fallback: undefined,
      expiresAt: new Date(Date.now() + 60_000),
    });
  });
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
