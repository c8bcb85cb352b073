import assert from "node:assert/strict";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { CHANNEL, type Harness, startHarness } from "../support/harness.ts";
import type { Script } from "../support/model-server.ts";
import { taskWithStatus } from "../support/observe.ts";
import { finishedTask, toolCallsOf } from "../support/scripts-humans.ts";

// An operator connects Baton to their own systems with HTTP tools in the agents file: the CRM
// here is a local server that answers as the README's contract says.

interface CrmCall {
  path: string;
  headers: IncomingHttpHeaders;
  body: {
    tool: string;
    arguments: Record<string, unknown>;
    idempotency_key: string;
    task_id: string;
    agent_id: string;
  };
}

const calls: CrmCall[] = [];
const tickets = new Map<string, string>();
const crm = createServer((req, res) => {
  let raw = "";
  req.on("data", (chunk) => {
    raw += chunk;
  });
  req.on("end", () => {
    const call: CrmCall = { path: req.url ?? "", headers: req.headers, body: JSON.parse(raw) };
    calls.push(call);
    const answer = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (req.headers.authorization !== "Bearer crm-secret-7") return answer(401, {});
    if (call.path === "/customers/find") {
      return call.body.arguments.email === "dana@example.com"
        ? answer(200, { name: "Dana Reyes", plan: "pro" })
        : answer(404, { error: "no customer has that email" });
    }
    // Tickets: the first try meets an outage; the retry's key finds the ticket made once.
    if (calls.filter((c) => c.path === "/tickets").length === 1) return answer(503, {});
    const key = String(req.headers["idempotency-key"]);
    if (!tickets.has(key)) tickets.set(key, `T-${tickets.size + 1}`);
    return answer(201, { ticket: tickets.get(key) });
  });
});

const FILE = (crmUrl: string) => `
defaults:
  entry_agent: support
agents:
  - id: support
    name: Support
    icon: ":wave:"
    instructions: Find the customer, then open a ticket.
    tools: [find_customer, open_ticket]
  - id: checker
    name: Checker
    icon: ":mag:"
    instructions: Ping the CRM.
    tools: [crm_ping]
  - id: refunder
    name: Refunder
    icon: ":moneybag:"
    instructions: Refund the customer.
    tools: [crm_refund]
policies:
  approvals:
    - id: crm-refunds
      tool: crm_refund
      approvers: { users: [U0LEE] }
tools:
  - name: crm_refund
    description: Refund through the CRM.
    class: irreversible
    url: ${crmUrl}/refunds
    headers:
      Authorization: "Bearer an-old-token"
    parameters: { type: object, properties: { amount_usd: { type: number } } }
  - name: crm_ping
    description: Check the CRM answers.
    class: read
    url: ${crmUrl}/ping
    headers:
      Authorization: "Bearer an-old-token"
    parameters: { type: object }
  - name: find_customer
    description: Find a customer by email.
    class: read
    url: ${crmUrl}/customers/find
    headers:
      Authorization: "Bearer \${CRM_TOKEN}"
    parameters:
      type: object
      properties:
        email: { type: string, description: "The customer's email" }
      required: [email]
      additionalProperties: false
  - name: open_ticket
    description: Open a support ticket.
    class: write
    url: ${crmUrl}/tickets
    timeout: 5s
    headers:
      Authorization: "Bearer \${CRM_TOKEN}"
    parameters:
      type: object
      properties:
        subject: { type: string }
      required: [subject]
`;

const lastTool = (messages: { role: string; content?: unknown }[]) =>
  String(messages.filter((m) => m.role === "tool").at(-1)?.content ?? "");

// Each step is chosen by how many tool results the stint holds, so a retried turn asks again.
const script: Script = (request, ctx) => {
  const results = request.messages.filter((m) => m.role === "tool").length;
  if (ctx.agentId === "refunder")
    return results
      ? { content: "Refunded." }
      : { toolCalls: [{ name: "crm_refund", arguments: { amount_usd: 20 } }] };
  if (ctx.agentId === "checker")
    return results
      ? { content: "The CRM answers." }
      : { toolCalls: [{ name: "crm_ping", arguments: {} }] };
  const call = (name: string, args: Record<string, unknown>) => ({
    toolCalls: [{ name, arguments: args }],
  });
  switch (results) {
    case 0:
      return call("find_customer", { email: "dana@example.com" });
    case 1:
      return call("find_customer", { email: 42 });
    case 2:
      return call("find_customer", { email: "nobody@example.com" });
    case 3:
      return call("open_ticket", { subject: "The lamp caught fire" });
    default:
      return { content: `Opened ${lastTool(request.messages)}` };
  }
};

let h: Harness;
before(async () => {
  await new Promise<void>((resolve) => crm.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(crm.address() as AddressInfo).port}`;
  process.env.CRM_TOKEN = "crm-secret-7";
  const names = new Set(demoTools.map((t) => t.name));
  h = await startHarness({ script, agentsFile: parseAgentsFile(FILE(url), "crm.yml", names) });
});
after(async () => {
  await h.close();
  crm.close();
  delete process.env.CRM_TOKEN;
});

test("HTTP tools: arguments checked, answers and refusals given to the model, an outage retried once", async () => {
  const { ts } = await h.mention("dana@example.com says her lamp caught fire");
  const task = await h.until("the task to finish", () => finishedTask(h.db.db, ts), 20_000);

  // The operator's JSON Schema is what the model sees.
  const first = h.model.requestsFor("support")[0]?.body;
  const spec = ((first?.tools ?? []) as { function: { name: string; parameters: unknown } }[]).find(
    (t) => t.function.name === "find_customer",
  );
  assert.deepEqual(spec?.function.parameters, {
    type: "object",
    properties: { email: { type: "string", description: "The customer's email" } },
    required: ["email"],
    additionalProperties: false,
  });

  // The bad arguments never reached the CRM; the others did, with the token and the call's key.
  assert.deepEqual(
    calls.map((c) => [c.path, c.body.arguments]),
    [
      ["/customers/find", { email: "dana@example.com" }],
      ["/customers/find", { email: "nobody@example.com" }],
      ["/tickets", { subject: "The lamp caught fire" }],
      ["/tickets", { subject: "The lamp caught fire" }],
    ],
  );
  for (const c of calls) {
    assert.equal(c.headers.authorization, "Bearer crm-secret-7");
    assert.equal(c.headers["idempotency-key"], c.body.idempotency_key);
    assert.deepEqual([c.body.task_id, c.body.agent_id], [task.id, "support"]);
  }
  const [outage, retry] = calls.filter((c) => c.path === "/tickets");
  assert.equal(outage?.body.idempotency_key, retry?.body.idempotency_key, "one key for both tries");

  const requests = h.model.requestsFor("support").map((r) => r.body.messages);
  assert.match(lastTool(requests[1] ?? []), /Dana Reyes/);
  assert.match(lastTool(requests[2] ?? []), /email/, "the schema's complaint");
  assert.match(lastTool(requests[3] ?? []), /no customer has that email/);

  const finds = await toolCallsOf(h.db.db, task.id, "find_customer");
  assert.deepEqual(
    finds.map((c) => c.status),
    ["done", "failed"],
  );
  const opened = await toolCallsOf(h.db.db, task.id, "open_ticket");
  assert.deepEqual(
    opened.map((c) => [c.status, c.result]),
    [["done", { ticket: "T-1" }]],
  );
  const answer = h.slack.messagesIn(CHANNEL, ts).at(-1);
  assert.match(String(answer?.text), /Opened .*T-1/);

  // The token is read from the environment at each call, and is written nowhere.
  const leaks = await h.db.db
    .selectFrom("audit_events")
    .select("id")
    .where((eb) => eb(eb.cast("data", "text"), "like", "%crm-secret%"))
    .execute();
  assert.equal(leaks.length, 0);
});

test("an HTTP tool whose credentials are refused stops its task at once, and the thread says why", async () => {
  const before = calls.length;
  const { ts } = await h.mention("checker: is the CRM up?");
  const failed = await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"));
  assert.match(
    String(failed.failure_reason),
    /crm_ping .* refused Baton's credentials \(HTTP 401\)/,
  );
  assert.equal(calls.length - before, 1, "called once, not once per retry");
  assert.equal(h.model.requestsFor("checker").length, 1, "the model asked once");
  const notice = await h.until("the thread to be told", async () =>
    h.slack.messagesIn(CHANNEL, ts).find((m) => /credentials/.test(JSON.stringify(m))),
  );
  assert.doesNotMatch(JSON.stringify(notice), /an-old-token/);
});

test("an approved HTTP call whose credentials are refused stops its task at once too", async () => {
  const before = calls.length;
  const { ts } = await h.mention("refunder: refund 20 USD please");
  const approval = await h.until("the approval card", async () => {
    const row = await h.db.db
      .selectFrom("approvals")
      .selectAll()
      .where("tool", "=", "crm_refund")
      .executeTakeFirst();
    return row?.card_ts ? row : undefined;
  });
  await h.clickCard("U0LEE", APPROVAL_APPROVE, approval, ts);
  const failed = await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"));
  assert.match(
    String(failed.failure_reason),
    /crm_refund .* refused Baton's credentials \(HTTP 401\)/,
  );
  assert.equal(calls.length - before, 1, "called once, not once per retry");
});
