import assert from "node:assert/strict";
import { after, test } from "node:test";
import type { ToolDefinition } from "../../src/core/tools/tool.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import {
  assertFlowOneDoneOnce,
  flowOneByState,
  leaseLeftMs,
  playFlowOneOnce,
  whereIsMyOrderScript,
} from "../support/scripts.ts";
import { finishedTask } from "../support/scripts-humans.ts";

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
