import assert from "node:assert/strict";
import { test } from "node:test";
import { z } from "zod";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { agentDirectory } from "../../src/core/agents/directory.ts";
import { countsEarlierCalls, gateFor } from "../../src/core/policy.ts";
import type { ToolDefinition } from "../../src/core/tools/tool.ts";

// A threshold counts what the tool already did in the task: the gate is given the arguments of
// the tool's earlier calls that count (runtime/tool-actions.ts reads them), and adds them up.

const tool = (name: string, toolClass: ToolDefinition["toolClass"]): ToolDefinition => ({
  name,
  description: name,
  toolClass,
  input: z.object({
    amount_usd: z.union([z.number(), z.string()]).optional(),
    order_id: z.string().optional(),
  }),
  run: async () => ({ ok: true }),
});
const refund = tool("refund", "irreversible");
const credit = tool("credit", "write");
const flag = tool("flag", "write");
const look = tool("look", "read");
const file = parseAgentsFile(
  `
agents:
  - { id: billing, name: Billing, icon: ":b:", instructions: bill, tools: [refund, credit, flag, look] }
  - { id: shadowy, name: Shadowy, icon: ":c:", instructions: try, tools: [refund], autonomy: shadow }
policies:
  approvals:
    - { id: huge, tool: refund, when: { argument: amount_usd, greater_than: 1000 }, approvers: { users: [U0CFO] } }
    - { id: big, tool: refund, when: { argument: amount_usd, greater_than: 100 }, approvers: { groups: [S0LEADS] } }
    - { id: credits, tool: credit, when: { argument: amount_usd, at_least: 50 }, approvers: { groups: [S0LEADS] } }
    - { id: vip, tool: flag, when: { argument: order_id, equals: "1077" }, approvers: { users: [U0BOSS] } }
`,
  "test.yml",
  new Set(["refund", "credit", "flag", "look"]),
);
const agents = agentDirectory(file);
const billing = agents.require("billing");

function gate(t: ToolDefinition, amount: unknown, earlier: unknown[]) {
  const g = gateFor(billing, t, { amount_usd: amount }, file, earlier);
  return g.kind === "approval" ? { policy: g.policyId, why: g.why } : { policy: g.kind };
}

test("a threshold compares this call's amount plus the task's earlier ones", () => {
  assert.deepEqual(gate(refund, 60, []), { policy: "run" });
  assert.deepEqual(
    gate(refund, 40, [{ amount_usd: 60 }]),
    { policy: "run" },
    "100 is not over 100",
  );
  assert.deepEqual(gate(refund, 60, [{ amount_usd: 60 }]), {
    policy: "big",
    why: "amount_usd 60 in this call, 120 with this task's earlier refund calls (over 100)",
  });
  // Read as the call's own amount is: "60" is 60.
  assert.equal(gate(refund, 30, [{ amount_usd: "40" }, { amount_usd: 31 }]).policy, "big");
  // Each policy compares the same total: the stricter one listed first still applies first.
  assert.equal(gate(refund, 600, [{ amount_usd: 500 }]).policy, "huge");
  // at_least: reaching it is enough.
  assert.deepEqual(gate(credit, 20, [{ amount_usd: 30 }]), {
    policy: "credits",
    why: "amount_usd 20 in this call, 50 with this task's earlier credit calls (50 or more)",
  });
  assert.equal(gate(credit, 19.99, [{ amount_usd: 30 }]).policy, "run");
});

test("the sum is not fooled by floating point, nor lowered by a negative amount", () => {
  assert.equal(gate(refund, 33.34, [{ amount_usd: 33.33 }, { amount_usd: 33.33 }]).policy, "run");
  assert.equal(
    gate(credit, 16.66, [{ amount_usd: 16.67 }, { amount_usd: 16.67 }]).policy,
    "credits",
  );
  assert.equal(gate(refund, 60, [{ amount_usd: 60 }, { amount_usd: -500 }]).policy, "big");
});

// Unknown, the total may be any amount: the first (strictest) threshold policy applies, as it does
// to an amount of the call's own that cannot be read.
test("an earlier amount that is not a number leaves the total unknown: the call waits", () => {
  const g = gate(refund, 10, [{ amount_usd: 5 }, { amount_usd: "all of it" }]);
  assert.equal(g.policy, "huge");
  assert.match(
    g.why ?? "",
    /earlier refund call of this task has an amount_usd that is not a number/,
  );
  assert.equal(gate(refund, 10, [{ order_id: "1077" }]).policy, "huge", "left out: all of it");
});

test("with no earlier calls, the call's own amount decides as before, and the card gives no why", () => {
  assert.deepEqual(gate(refund, "60 USD", []), { policy: "huge", why: undefined });
  assert.deepEqual(gate(refund, 150, []), { policy: "big", why: undefined });
  assert.equal(gate(refund, 150, [{ amount_usd: 10 }]).why?.includes("160"), true);
});

test("equals is per call; only a tool with a threshold needs its earlier calls", () => {
  const flagged = (order: string, earlier: unknown[]) =>
    gateFor(billing, flag, { order_id: order }, file, earlier).kind;
  assert.equal(flagged("1042", [{ order_id: "1077" }]), "run");
  assert.equal(flagged("1077", []), "approval");
  assert.equal(countsEarlierCalls(billing, refund, file), true);
  assert.equal(countsEarlierCalls(billing, credit, file), true);
  assert.equal(countsEarlierCalls(billing, flag, file), false, "equals only: no round trip");
  assert.equal(countsEarlierCalls(billing, look, file), false, "read tools never wait");
  assert.equal(countsEarlierCalls(agents.require("shadowy"), refund, file), false);
});
