import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { ToolDefinition } from "../../src/core/tools/tool.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { taskWithStatus } from "../support/observe.ts";

// An operator's tool with an outside effect: it counts its runs by idempotency key.
const runs: string[] = [];
const tools: ToolDefinition[] = demoTools.map((t) =>
  t.name === "lookup_order"
    ? {
        ...t,
        run: async (ctx, input) => {
          runs.push(ctx.idempotencyKey);
          return t.run(ctx, input);
        },
      }
    : t,
);

// The same call twice under one id (a server that repeats a call it streamed): one call, run once.
const call = { id: "call_dup", name: "lookup_order", arguments: { order_id: "1042" } };
const script = scriptByAgent({
  "customer-service": [{ toolCalls: [call, call] }, { content: "Order 1042 is in the warehouse." }],
});

let h: Harness;
before(async () => {
  h = await startHarness({ tools, script });
});
after(async () => {
  await h.close();
});

test("a tool call repeated under the same tool_call id runs once", async () => {
  const { ts } = await h.mention("where is order 1042?");
  await h.until("the task to finish", () => taskWithStatus(h.db.db, ts, "done"));
  assert.equal(runs.length, 1, `the tool ran under keys ${runs.join(", ")}`);
  const second = h.model.requestsFor("customer-service")[1];
  const answers = (second?.body.messages ?? []).filter((m) => m.role === "tool");
  assert.equal(answers.length, 1, "one call, one answer: ids stay unique in the conversation");
});
