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

/** The agents file: the CRM tool defined or not, listed by the refunder or not, shadow or not. */
const file = (
  crmUrl: string,
  o: { defined?: boolean; listed?: boolean; shadow?: boolean } = {},
) => {
  const { defined = true, listed = defined, shadow = false } = o;
  return `
defaults:
  entry_agent: refunder
agents:
  - id: refunder
    name: Refunder
    icon: ":moneybag:"
    instructions: Refund the customer.${shadow ? "\n    autonomy: shadow" : ""}
    tools: [${listed ? "crm_refund" : "lookup_order"}]
policies:
  approvals:${defined ? "\n    - id: crm-refunds\n      tool: crm_refund\n      approvers: { users: [U0LEE] }" : " []"}
${
  defined
    ? `tools:
  - name: crm_refund
    description: Refund through the CRM.
    class: write
    url: ${crmUrl}/refunds
    parameters: { type: object, properties: { amount_usd: { type: number } } }`
    : ""
}
`;
};

let told = "";
const script: Script = (request) => {
  const result = request.messages.filter((m) => m.role === "tool").at(-1);
  if (!result) return { toolCalls: [{ name: "crm_refund", arguments: { amount_usd: 20 } }] };
  told = textOf(result);
  return { content: "Sorry, I could not refund you: a person will follow up." };
};

let dir: string;
let agentsPath: string;
let crmUrl: string;
let h: Harness;
before(async () => {
  await new Promise<void>((resolve) => crm.listen(0, "127.0.0.1", resolve));
  dir = await mkdtemp(path.join(tmpdir(), "baton-tool-gone-"));
  agentsPath = path.join(dir, "agents.yml");
  crmUrl = `http://127.0.0.1:${(crm.address() as AddressInfo).port}`;
  await writeFile(agentsPath, file(crmUrl));
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

/**
 * Asks for a refund, lets its approval wait, reloads the agents file as `changed`, then approves.
 * Returns what the agent was told and the call's status; the file is put back after.
 */
async function approvedAfterReload(changed: string, order: string) {
  told = "";
  const { ts } = await h.mention(`refund 20 USD for order ${order} please`);
  const approval = await h.until("the approval card", async () => {
    const row = await h.db.db
      .selectFrom("approvals")
      .selectAll()
      .where("status", "=", "pending")
      .executeTakeFirst();
    return row?.card_ts ? row : undefined;
  });
  await writeFile(agentsPath, changed);
  assert.equal(await h.baton.reloadAgents(), true);
  await h.clickCard("U0LEE", APPROVAL_APPROVE, approval, ts);
  const task = await h.until("the answer", () => taskWithStatus(h.db.db, ts, "done"));
  await writeFile(agentsPath, file(crmUrl));
  assert.equal(await h.baton.reloadAgents(), true);
  const call = await h.db.db
    .selectFrom("tool_calls")
    .select("status")
    .where("task_id", "=", task.id)
    .where("tool", "=", "crm_refund")
    .executeTakeFirstOrThrow();
  return { told, status: call.status };
}

test("an approved call whose tool was taken out of the agents file is not run, and the agent is told", async () => {
  const { told, status } = await approvedAfterReload(file(crmUrl, { defined: false }), "1077");
  assert.match(told, /approved this call, but it was not run: crm_refund is no longer/);
  assert.equal(status, "failed");
  assert.equal(refundsAsked, 0, "the removed tool's endpoint was never called");
});

test("an approved call its agent may no longer make, or makes in shadow mode now, is not run", async () => {
  const unlisted = await approvedAfterReload(file(crmUrl, { listed: false }), "1078");
  assert.match(unlisted.told, /not run: crm_refund is no longer one of your tools/);
  assert.equal(unlisted.status, "failed");
  const shadow = await approvedAfterReload(file(crmUrl, { shadow: true }), "1079");
  assert.match(shadow.told, /not run: you are in shadow mode now/);
  assert.equal(refundsAsked, 0, "the endpoint was never called");
});
