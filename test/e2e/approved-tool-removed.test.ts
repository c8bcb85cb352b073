import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { loadAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import type { Script } from "../support/model-server.ts";
import { taskWithStatus, textOf } from "../support/observe.ts";

// An approval waits on a call of an HTTP tool; the operator takes the tool out of the agents file
// and reloads it (SIGHUP); then a lead approves. The call cannot run: before, the job threw on every
// retry until the task was dead-lettered. Now the agent is told, and answers.

let refundsAsked = 0;
const crm = createServer((req, res) => {
  refundsAsked++;
  req.resume();
  res.writeHead(200, { "content-type": "application/json" }).end("{}");
});

const file = (crmUrl?: string) => `
defaults:
  entry_agent: refunder
agents:
  - id: refunder
    name: Refunder
    icon: ":moneybag:"
    instructions: Refund the customer.
    tools: [${crmUrl ? "crm_refund" : "lookup_order"}]
policies:
  approvals:${crmUrl ? "\n    - id: crm-refunds\n      tool: crm_refund\n      approvers: { users: [U0LEE] }" : " []"}
${
  crmUrl
    ? `tools:
  - name: crm_refund
    description: Refund through the CRM.
    class: write
    url: ${crmUrl}/refunds
    parameters: { type: object, properties: { amount_usd: { type: number } } }`
    : ""
}
`;

let told = "";
const script: Script = (request) => {
  const result = request.messages.filter((m) => m.role === "tool").at(-1);
  if (!result) return { toolCalls: [{ name: "crm_refund", arguments: { amount_usd: 20 } }] };
  told = textOf(result);
  return { content: "Sorry, I could not refund you: a person will follow up." };
};

let dir: string;
let agentsPath: string;
let h: Harness;
before(async () => {
  await new Promise<void>((resolve) => crm.listen(0, "127.0.0.1", resolve));
  dir = await mkdtemp(path.join(tmpdir(), "baton-tool-gone-"));
  agentsPath = path.join(dir, "agents.yml");
  await writeFile(agentsPath, file(`http://127.0.0.1:${(crm.address() as AddressInfo).port}`));
  h = await startHarness({
    script,
    agentsFile: await loadAgentsFile(agentsPath, demoTools),
    agentsPath,
    jobRetries: 1,
  });
});
after(async () => {
  await h.close();
  crm.close();
  await rm(dir, { recursive: true, force: true });
});

test("an approved call whose tool was taken out of the agents file is not run, and the agent is told", async () => {
  const { ts } = await h.mention("refund 20 USD please");
  const approval = await h.until("the approval card", async () => {
    const row = await h.db.db.selectFrom("approvals").selectAll().executeTakeFirst();
    return row?.card_ts ? row : undefined;
  });
  await writeFile(agentsPath, file());
  assert.equal(await h.baton.reloadAgents(), true);
  await h.clickCard("U0LEE", APPROVAL_APPROVE, approval, ts);

  const task = await h.until("the answer", () => taskWithStatus(h.db.db, ts, "done"));
  assert.match(told, /approved this call, but it was not run: crm_refund is no longer/);
  assert.equal(refundsAsked, 0, "the removed tool's endpoint was never called");
  const call = await h.db.db
    .selectFrom("tool_calls")
    .select("status")
    .where("task_id", "=", task.id)
    .where("tool", "=", "crm_refund")
    .executeTakeFirstOrThrow();
  assert.equal(call.status, "failed");
});
