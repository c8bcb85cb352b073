import assert from "node:assert/strict";
import { test } from "node:test";
import { z } from "zod";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { agentDirectory } from "../../src/core/agents/directory.ts";
import { gateFor } from "../../src/core/policy.ts";
import type { ToolDefinition } from "../../src/core/tools/tool.ts";

// The gate (core/policy.ts) compares the arguments after the tool's zod schema parsed them
// (dispatch.ts passes parsed.value), so the load-time check reads the schema's output side: a tool
// whose schema turns text into a number is not refused for a policy that applies.

const refund: ToolDefinition<{ order_id: string; amount_usd: number }> = {
  name: "refund_text_amount",
  description: "Refunds; the amount may come as text",
  toolClass: "irreversible",
  input: z.object({ order_id: z.string(), amount_usd: z.string().transform(Number) }),
  async run() {
    return {};
  },
};

const FILE = `
agents:
  - id: billing
    name: Billing
    icon: ":moneybag:"
    instructions: Refunds.
    tools: [refund_text_amount]
policies:
  approvals:
    - id: large-refunds
      tool: refund_text_amount
      when: { argument: amount_usd, greater_than: 100 }
      approvers: { users: [U0LEAD] }
`;

test("a policy that the gate applies is accepted at load", () => {
  // Load with names only (the old API): no class/argument check, the file loads.
  const file = parseAgentsFile(FILE, "agents.yml", new Set([refund.name]), {});
  const agent = agentDirectory(file).require("billing");
  const args = refund.input.parse({ order_id: "1077", amount_usd: "149" });
  const gate = gateFor(agent, refund as ToolDefinition, args, file);
  assert.equal(gate.kind, "approval", "the policy does apply to a 149 USD call");
  // The same file with the tool's definition loads too.
  assert.doesNotThrow(() => parseAgentsFile(FILE, "agents.yml", [refund as ToolDefinition], {}));
});
