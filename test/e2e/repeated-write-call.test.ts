import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { ToolDefinition } from "../../src/core/tools/tool.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { taskWithStatus, textOf, toolMessages } from "../support/observe.ts";

// An operator's write tool with an outside effect, which does not guard itself: it counts its runs.
const runs: string[] = [];
const tools: ToolDefinition[] = demoTools.map((t) =>
  t.name === "issue_refund"
    ? {
        ...t,
        run: async (ctx, input) => {
          runs.push(ctx.idempotencyKey);
          return t.run(ctx, input);
        },
      }
    : t,
);

// Over 100 USD: it waits for a billing lead (agents.yml).
const bigRefund = {
  name: "issue_refund",
  arguments: { order_id: "1077", amount_usd: 149, reason: "the lamp caught fire" },
};

// The same refund twice in one reply, under two ids and with its arguments in another order.
const script = scriptByAgent({
  billing: [
    {
      toolCalls: [
        {
          id: "call_a",
          name: "issue_refund",
          arguments: { order_id: "1077", amount_usd: 40, reason: "lamp came back broken" },
        },
        {
          id: "call_b",
          name: "issue_refund",
          arguments: '{"reason": "lamp came back broken", "amount_usd": 40, "order_id": "1077"}',
        },
      ],
    },
    { content: "Refunded 40 USD for order 1077." },
    {
      toolCalls: [
        { id: "call_c", ...bigRefund },
        { id: "call_d", ...bigRefund },
      ],
    },
  ],
});

let h: Harness;
before(async () => {
  h = await startHarness({ tools, script });
});
after(async () => {
  await h.close();
});

test("a write repeated in one reply under another id runs once; both ids are answered", async () => {
  const { ts } = await h.mention("billing: refund 40 USD on order 1077, the lamp came back broken");
  const task = await h.until("the task to finish", () =>
    taskWithStatus(h.db.db, ts, "done", "failed"),
  );
  assert.equal(task.status, "done", task.failure_reason ?? "");
  assert.equal(runs.length, 1, `the tool ran under keys ${runs.join(", ")}`);
  const calls = await h.db.db
    .selectFrom("tool_calls")
    .select(["tool", "status"])
    .where("task_id", "=", task.id)
    .execute();
  assert.deepEqual(calls, [{ tool: "issue_refund", status: "done" }]);

  const second = h.model.requestsFor("billing")[1];
  assert.ok(second, "the model was asked again after the calls");
  const answers = toolMessages(second.body);
  assert.deepEqual(
    answers.map((m) => m.tool_call_id),
    ["call_a", "call_b"],
    "every call id gets its answer",
  );
  const [first, repeat] = answers.map((m) => JSON.parse(textOf(m)) as Record<string, unknown>);
  assert.ok(first?.refund_id, `the first call's result: ${JSON.stringify(first)}`);
  assert.match(String(repeat?.repeat_of), /call_a/);
  assert.deepEqual(repeat?.result, first, "the repeat reads the first call's result");
});

test("a write repeated in one reply waits on one approval, and its repeat is answered", async () => {
  const { ts } = await h.mention("billing: refund order 1077 in full, the lamp caught fire");
  const task = await h.until("the task to wait on an approval", () =>
    taskWithStatus(h.db.db, ts, "waiting_human", "failed", "done"),
  );
  assert.equal(task.status, "waiting_human", task.failure_reason ?? "");
  const approvals = await h.db.db
    .selectFrom("approvals")
    .select("id")
    .where("task_id", "=", task.id)
    .execute();
  assert.equal(approvals.length, 1, "one card for one refund");
  const answers = await h.db.db
    .selectFrom("conversation")
    .select("message")
    .where("task_id", "=", task.id)
    .execute();
  const repeat = answers
    .map((row) => row.message as { role: string; tool_call_id?: string; content?: string })
    .find((m) => m.role === "tool" && m.tool_call_id === "call_d");
  assert.match(String(repeat?.content), /"repeat_of":"call_c"/);
});
