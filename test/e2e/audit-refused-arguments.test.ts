import assert from "node:assert/strict";
import { after, test } from "node:test";
import { auditStory } from "../../src/runtime/audit-story.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { type ChatRequest, scriptByAgent } from "../support/model-server.ts";
import { auditEvents, taskWithStatus, textOf, toolMessages } from "../support/observe.ts";
import { assertFlowOneDoneOnce, whereIsMyOrderScript } from "../support/scripts.ts";

// A tool call whose arguments the tool's schema refuses is refused like a call outside the agent's
// role: the audit names the tool, what the model sent and why, and nothing of it runs.

let h: Harness | undefined;
after(async () => {
  await h?.close();
});

/** What the model was told of its refused call: the next request's last tool message. */
function toldInNext(request: { body: ChatRequest } | undefined): string {
  assert.ok(request, "the model is asked again after the refusal");
  const told = textOf(toolMessages(request.body).at(-1) ?? { role: "tool", content: "" });
  return String((JSON.parse(told) as { error?: unknown }).error);
}

const NOT_JSON = '{"order_id": "1042"';
const BAD_COUNT = { sku: "LAMP-OAK", counted_quantity: "fourteen", reason: "ok" };

test("a call whose arguments fail its schema is audited as a refused call, told in words, and has no effect", async () => {
  const flow = whereIsMyOrderScript();
  const [lookup, ...customerService] = flow["customer-service"] ?? [];
  const [checkStock, ...inventory] = flow.inventory ?? [];
  assert.ok(lookup && checkStock);
  const script = scriptByAgent({
    ...flow,
    // Not JSON at all, then a write whose count is a word and whose reason is too short.
    "customer-service": [
      { toolCalls: [{ name: "lookup_order", arguments: NOT_JSON }] },
      lookup,
      ...customerService,
    ],
    inventory: [
      checkStock,
      { toolCalls: [{ name: "adjust_stock", arguments: BAD_COUNT }] },
      ...inventory,
    ],
  });
  h = await startHarness({ script });
  const harness = h;
  const { ts } = await harness.mention("where is order 1042?");
  const task = await harness.until("the task to finish", () =>
    taskWithStatus(harness.db.db, ts, "done"),
  );
  assert.deepEqual(script.remaining(), { "customer-service": 0, fulfillment: 0, inventory: 0 });
  // Nothing of the refused calls ran: one stock adjustment, and no tool_calls row for them.
  await assertFlowOneDoneOnce(
    { db: harness.db.db, slack: harness.slack, until: harness.until },
    task,
    ts,
  );
  assert.equal(task.model_errors, 0, "each refusal counted, and the next good reply cleared it");

  const refused = await auditEvents(harness.db.db, task.id, "tool_refused");
  assert.deepEqual(
    refused.map((e) => ({
      actor: `${e.actor_kind}:${e.actor_id}`,
      tool: e.data.tool,
      reason: e.data.reason,
      arguments: e.data.arguments,
    })),
    [
      {
        actor: "agent:customer-service",
        tool: "lookup_order",
        reason: "invalid_arguments",
        arguments: NOT_JSON,
      },
      {
        actor: "agent:inventory",
        tool: "adjust_stock",
        reason: "invalid_arguments",
        arguments: JSON.stringify(BAD_COUNT),
      },
    ],
  );
  // Why: the words the model was told, as it was told them.
  assert.equal(
    refused[0]?.data.message,
    toldInNext(harness.model.requestsFor("customer-service")[1]),
  );
  assert.equal(refused[1]?.data.message, toldInNext(harness.model.requestsFor("inventory")[2]));
  assert.deepEqual(await auditEvents(harness.db.db, task.id, "model_error"), []);

  const { entries } = await auditStory(harness.baton.deps, task.id);
  const lines = entries
    .filter((e) => e.kind === "tool_refused" || e.kind === "tool_call")
    .map((e) => `${e.actor} ${e.text}`);
  assert.match(
    lines[0] ?? "",
    /^agent:customer-service Refused lookup_order\(\{"order_id": "1042"\): arguments are not valid JSON \(.+\)\.$/,
  );
  assert.equal(
    lines[1],
    'agent:customer-service lookup_order(order_id="1042") → done; allowed by policy:read',
  );
  const inventoryLines = lines.filter((l) => l.startsWith("agent:inventory"));
  assert.match(
    inventoryLines[1] ?? "",
    /^agent:inventory Refused adjust_stock\(sku="LAMP-OAK", counted_quantity="fourteen", reason="ok"\): arguments do not match the schema: counted_quantity: .*number.*; reason: .*\.$/,
  );
  assert.match(
    inventoryLines[2] ?? "",
    /^agent:inventory adjust_stock\(.*counted_quantity=14.*\) → done/,
  );
});
