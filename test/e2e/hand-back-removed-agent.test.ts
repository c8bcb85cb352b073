import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import type { Script } from "../support/model-server.ts";
import { postsInThread, taskWithStatus } from "../support/observe.ts";

// Customer Service hands to a returns desk, which hands to Inventory. The operator then removes the
// returns desk from the agents file and restarts Baton while Inventory still holds the task.
const agent = (id: string, name: string, handoffs: string[]) => `
  - id: ${id}
    name: ${name}
    icon: ":bust_in_silhouette:"
    tools: [check_stock]
    handoffs: [${handoffs.join(", ")}]
    instructions: Help with the order.`;
const file = (agents: string) =>
  parseAgentsFile(
    `defaults:\n  entry_agent: customer-service\nagents:${agents}\n`,
    "removed-agent.yml",
    new Set(demoTools.map((t) => t.name)),
  );
const before_ = file(
  agent("customer-service", "Customer Service", ["returns-desk"]) +
    agent("returns-desk", "Returns Desk", ["inventory"]) +
    agent("inventory", "Inventory", []),
);
const after_ = file(
  agent("customer-service", "Customer Service", ["inventory"]) +
    agent("inventory", "Inventory", []),
);

const transfer = (to: string) => ({
  toolCalls: [
    {
      name: `transfer_to_${to}`,
      arguments: { summary: "Check the lamp's stock.", needed: "A stock count.", facts: {} },
    },
  ],
});
// Inventory's model is down until the restart: its job fails and waits for its retry.
const firstScript: Script = (_request, ctx) => {
  if (ctx.agentId === "customer-service") return transfer("returns-desk");
  if (ctx.agentId === "returns-desk") return transfer("inventory");
  return { error: "the model is down", status: 500 };
};
const secondScript: Script = (request, ctx) => {
  if (ctx.agentId === "inventory")
    return {
      toolCalls: [{ name: "hand_back", arguments: { result: "14 lamps on hand.", facts: {} } }],
    };
  const handedBack = request.messages.some((m) => /handed back: 14 lamps/.test(String(m.content)));
  return { content: handedBack ? "We have 14 lamps in stock." : "Unexpected request." };
};

let h: Harness;
before(async () => {
  h = await startHarness({ script: firstScript, agentsFile: before_ });
});
after(async () => {
  await h.close();
});

test("a hand-back passes an agent removed from the agents file and reaches the one before it", async () => {
  const { ts } = await h.mention("do we have the oak lamp in stock?");
  await h.until("Inventory to be asked", async () => h.model.requestsFor("inventory").length > 0);
  await h.restart({ script: secondScript, agentsFile: after_ });

  const task = await h.until("the task to be done", () => taskWithStatus(h.db.db, ts, "done"));
  const handoffs = await h.db.db
    .selectFrom("handoffs")
    .select(["kind", "from_id", "to_id"])
    .where("task_id", "=", task.id)
    .where("kind", "in", ["transfer", "hand_back"])
    .orderBy("created_at")
    .execute();
  assert.deepEqual(
    handoffs.map((x) => `${x.kind} ${x.from_id}->${x.to_id}`),
    [
      "transfer customer-service->returns-desk",
      "transfer returns-desk->inventory",
      "hand_back inventory->customer-service",
    ],
  );
  assert.deepEqual(task.handback_stack, [], "the chain unwound past the removed agent");
  // Done in the database first; the answer reaches Slack right after.
  await h.until("Customer Service's answer in the thread", async () =>
    postsInThread(h.slack, ts).find(
      (c) =>
        c.args.username === "Customer Service" && /14 lamps in stock/.test(String(c.args.text)),
    ),
  );
});
