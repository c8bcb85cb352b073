import assert from "node:assert/strict";
import { test } from "node:test";
import { z } from "zod";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { agentDirectory } from "../../src/core/agents/directory.ts";
import { gateFor } from "../../src/core/policy.ts";
import type { ToolDefinition } from "../../src/core/tools/tool.ts";

// A refund tool wired to a payment API, as an operator's HTTP tool would describe it: the amount
// may be written as a number or as text, and may be left out (the API then refunds the whole
// charge). The model chooses the shape; the policy must gate the amount whatever shape it has.
const refund: ToolDefinition = {
  name: "refund",
  description: "Refund a charge",
  toolClass: "irreversible",
  input: z.fromJSONSchema({
    type: "object",
    properties: {
      order_id: { type: ["string", "array"] },
      amount_usd: { type: ["number", "string"] },
      rush: { type: ["boolean", "string"] },
    },
    required: ["order_id"],
  }),
  run: async () => ({ ok: true }),
};
const file = parseAgentsFile(
  `
agents:
  - { id: billing, name: Billing, icon: ":b:", instructions: bill, tools: [refund] }
policies:
  approvals:
    - { id: vip, tool: refund, when: { argument: order_id, equals: "1077" }, approvers: { users: [U0BOSS] } }
    - { id: big, tool: refund, when: { argument: amount_usd, greater_than: 100 }, approvers: { groups: [S0LEADS] } }
    - { id: rush, tool: refund, when: { argument: rush, equals: true }, approvers: { users: [U0BOSS] } }
`,
  "test.yml",
  new Set(["refund"]),
);
const billing = agentDirectory(file).require("billing");
const gate = (args: Record<string, unknown>) => {
  const parsed = refund.input.parse(args);
  const g = gateFor(billing, refund, parsed, file);
  return g.kind === "approval" ? g.policyId : g.kind;
};

test("an amount over the threshold waits, whether the model writes it as a number or as text", () => {
  assert.equal(gate({ order_id: "1", amount_usd: 50 }), "run");
  assert.equal(gate({ order_id: "1", amount_usd: 150 }), "big");
  assert.equal(gate({ order_id: "1", amount_usd: "150" }), "big");
  assert.equal(gate({ order_id: "1", amount_usd: " 150.00 " }), "big");
  assert.equal(gate({ order_id: "1", amount_usd: "1.5e3" }), "big");
  assert.equal(gate({ order_id: "1", amount_usd: "50" }), "run");
});

test("an amount the policy cannot read as a number waits for a person rather than running", () => {
  assert.equal(gate({ order_id: "1", amount_usd: "150 USD" }), "big");
  assert.equal(gate({ order_id: "1" }), "big", "left out: the API refunds the whole charge");
});

test("equals matches the value however the model spells it: number or text, spaces around", () => {
  assert.equal(gate({ order_id: "1077", amount_usd: 5 }), "vip");
  assert.equal(gate({ order_id: " 1077 ", amount_usd: 5 }), "vip");
  assert.equal(gate({ order_id: "1078", amount_usd: 5 }), "run");
});

test("equals reads true written as text, and a list holding the value, as the value", () => {
  assert.equal(gate({ order_id: "1", amount_usd: 5, rush: true }), "rush");
  assert.equal(gate({ order_id: "1", amount_usd: 5, rush: "true" }), "rush");
  assert.equal(gate({ order_id: "1", amount_usd: 5, rush: " TRUE " }), "rush");
  assert.equal(gate({ order_id: "1", amount_usd: 5, rush: "false" }), "run");
  assert.equal(gate({ order_id: ["1077"], amount_usd: 5 }), "vip");
  assert.equal(gate({ order_id: ["1078", " 1077"], amount_usd: 5 }), "vip");
  assert.equal(gate({ order_id: ["1078"], amount_usd: 5 }), "run");
});
