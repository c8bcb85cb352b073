import assert from "node:assert/strict";
import { test } from "node:test";
import { insertToolCall } from "../../src/db/ledger.repository.ts";
import { lockRateLimit, toolRunsWithin } from "../../src/db/rate-limits.repository.ts";
import { databaseForFile, insertOrderTask } from "../support/db.ts";

const t = databaseForFile();

const HOUR = 3_600_000;

test("two turns at a tool's rate limit count in turn: the second sees the first's call", async () => {
  const task = await insertOrderTask(t.db, "1700000000.000100");
  const call = (key: string) => ({
    taskId: task.id,
    stepNo: 1,
    agentId: "billing",
    tool: "issue_refund",
    toolClass: "irreversible",
    args: { order_id: "1077", amount_usd: 40 },
    idempotencyKey: key,
    status: "done" as const,
    result: { refund_id: 1 },
    allowedBy: "policy:autonomous",
  });
  let releaseFirst = () => {};
  const firstHolds = new Promise<void>((resolve) => {
    releaseFirst = resolve;
  });
  let firstLocked = () => {};
  const locked = new Promise<void>((resolve) => {
    firstLocked = resolve;
  });
  const first = t.db.transaction().execute(async (tx) => {
    await lockRateLimit(tx, "tool:issue_refund");
    const seen = await toolRunsWithin(tx, "issue_refund", HOUR);
    firstLocked();
    await firstHolds;
    await insertToolCall(tx, call("a"));
    return seen;
  });
  await locked;
  let secondCounted = false;
  const second = t.db.transaction().execute(async (tx) => {
    await lockRateLimit(tx, "tool:issue_refund");
    secondCounted = true;
    return toolRunsWithin(tx, "issue_refund", HOUR);
  });
  // The second waits on the lock for as long as the first holds it, however long that is.
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(secondCounted, false, "the second turn waits for the first to commit");
  releaseFirst();
  assert.equal(await first, 0);
  assert.equal(await second, 1, "the second counts the first's call");
});
