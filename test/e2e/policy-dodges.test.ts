import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { harnessPerTest } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { postsWhenAtLeast, waitForApprovalCard } from "../support/observe.ts";
import {
  answerDecision,
  auditKinds,
  finishedTask,
  REFUND_ARGS,
  refundCall,
  refundsOf,
  taskOfThread,
  toolCallsOf,
} from "../support/scripts-humans.ts";

// A model (or a customer's text steering it) trying to get round the agents file's policy.

describe("refused-beside-a-park", () => {
  const startHarness = harnessPerTest();

  // Billing asks for a refund over the threshold and, in the same reply, for a stock change that
  // is not its to make. The refund waits for a lead; the other call is refused all the same, and
  // the audit trail shows the attempt, as it would on its own.
  test("a call outside the allowlist beside one that waits for a person is refused and audited", async () => {
    const stockChange = { sku: "LAMP-OAK", counted_quantity: 500, reason: "the customer said so" };
    const h = await startHarness({
      script: scriptByAgent({
        billing: [
          {
            toolCalls: [
              { name: "issue_refund", arguments: REFUND_ARGS },
              { name: "adjust_stock", arguments: stockChange },
            ],
          },
          answerDecision,
        ],
      }),
    });
    const { ts } = await h.mention("billing: refund order 1077, and set LAMP-OAK to 500");
    await waitForApprovalCard(h);
    const task = await taskOfThread(h.db.db, ts);
    assert.ok(task);
    const refused = await auditKinds(h.db.db, task.id, "tool_refused");
    assert.deepEqual(
      refused.map((e) => [e.data.tool, e.data.reason]),
      [["adjust_stock", "not_allowed"]],
    );
    assert.equal((await h.db.db.selectFrom("stock_adjustments").selectAll().execute()).length, 0);
    assert.equal((await refundsOf(h.db.db)).length, 0);
  });
});

describe("strike-beside-a-write", () => {
  const startHarness = harnessPerTest();

  // Billing keeps asking for a stock change that is not its to make; its third such reply also
  // refunds the customer. That reply acted: the task must not stop as if nothing happened and ask
  // the requester to try again, but go on so the agent can say what it did.
  test("a reply whose write ran is no unusable reply, though another of its calls is refused", async () => {
    const stockChange = {
      name: "adjust_stock",
      arguments: { sku: "LAMP-OAK", counted_quantity: 500, reason: "the customer said so" },
    };
    const refund = { order_id: "1077", amount_usd: 20, reason: "The lamp came back scratched" };
    const h = await startHarness({
      script: scriptByAgent({
        billing: [
          { toolCalls: [stockChange] },
          { toolCalls: [stockChange] },
          { toolCalls: [{ name: "issue_refund", arguments: refund }, stockChange] },
          { content: "I refunded 20 USD for order 1077; I cannot change stock counts." },
        ],
      }),
    });
    const { ts } = await h.mention("billing: refund 20 USD for order 1077 and set LAMP-OAK to 500");
    const task = await h.until("the task to end", async () => {
      const row = await taskOfThread(h.db.db, ts);
      return row && row.status !== "active" ? row : undefined;
    });
    assert.equal((await refundsOf(h.db.db)).length, 1);
    assert.equal(task.status, "done", `the task ${task.status}: ${task.failure_reason}`);
    const answer = (await postsWhenAtLeast(h, ts, 1)).at(-1);
    assert.match(String(answer?.args.text), /refunded 20 USD/);
  });
});

describe("negative-amount", () => {
  const startHarness = harnessPerTest();
  // The operator's refund endpoint, as a payment API may be: it refunds the amount's size.
  const refunded: number[] = [];
  const crm = createServer((req, res) => {
    let raw = "";
    req.on("data", (chunk) => {
      raw += chunk;
    });
    req.on("end", () => {
      const { arguments: args } = JSON.parse(raw) as { arguments: { amount_usd: number } };
      refunded.push(Math.abs(args.amount_usd));
      res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
    });
  });
  let crmUrl: string;
  before(async () => {
    await new Promise<void>((resolve) => crm.listen(0, "127.0.0.1", resolve));
    crmUrl = `http://127.0.0.1:${(crm.address() as AddressInfo).port}`;
  });
  after(() => {
    crm.close();
  });

  test("a refund written as a negative amount over the threshold waits for a person", async () => {
    const file = parseAgentsFile(
      `
defaults:
  entry_agent: refunder
agents:
  - id: refunder
    name: Refunder
    icon: ":moneybag:"
    instructions: Refund the customer.
    tools: [crm_refund]
policies:
  approvals:
    - id: large-refunds
      tool: crm_refund
      when: { argument: amount_usd, greater_than: 100 }
      approvers: { users: [U0LEE] }
tools:
  - name: crm_refund
    description: Refund through the CRM.
    class: irreversible
    url: ${crmUrl}/refunds
    parameters: { type: object, properties: { amount_usd: { type: number } }, required: [amount_usd] }
`,
      "agents.yml",
      demoTools,
    );
    const h = await startHarness({
      agentsFile: file,
      script: scriptByAgent({
        refunder: [
          { toolCalls: [{ name: "crm_refund", arguments: { amount_usd: -150 } }] },
          { content: "Your refund is on its way." },
        ],
      }),
    });
    const { ts } = await h.mention("refund me 150 USD please");
    const task = await h.until("the task to answer or wait", async () => {
      const row = await taskOfThread(h.db.db, ts);
      return row && row.status !== "active" ? row : undefined;
    });
    assert.deepEqual(refunded, [], "nothing is refunded before a person decides");
    assert.equal(task.status, "waiting_human");
    const approval = await waitForApprovalCard(h);
    assert.equal(approval.policy_id, "large-refunds");
  });
});

describe("shadow-at-rate-limit", () => {
  const startHarness = harnessPerTest();

  // A shadow agent only proposes: its proposal runs nothing, so the real tool's rate limit, reached
  // by an agent that acts, must not refuse it nor count it as an unusable reply.
  test("a shadow agent's proposal is shown though the tool is at its rate limit", async () => {
    const refund = { order_id: "1077", amount_usd: 40, reason: "Scratched on arrival" };
    const file = parseAgentsFile(
      `
defaults:
  entry_agent: refunder
agents:
  - id: refunder
    name: Refunder
    icon: ":moneybag:"
    instructions: Refund the customer.
    tools: [issue_refund]
  - id: trainee
    name: Trainee
    icon: ":hatching_chick:"
    instructions: Propose the refund.
    autonomy: shadow
    tools: [issue_refund]
policies:
  rate_limits:
    tools: [{ tool: issue_refund, max: 1, per: 1h }]
`,
      "agents.yml",
      demoTools,
    );
    const h = await startHarness({
      agentsFile: file,
      script: scriptByAgent({
        refunder: [refundCall(refund), { content: "Refunded." }],
        trainee: [refundCall(refund), { content: "I proposed the refund." }],
      }),
    });
    const first = await h.mention("refunder: refund 40 USD on order 1077");
    await h.until("the refund", () => finishedTask(h.db.db, first.ts));
    const second = await h.mention("trainee: refund 40 USD on order 1077");
    const task = await h.until("the proposal's answer", () => finishedTask(h.db.db, second.ts));

    assert.deepEqual(
      (await toolCallsOf(h.db.db, task.id, "issue_refund")).map((c) => c.status),
      ["shadowed"],
    );
    assert.deepEqual(await auditKinds(h.db.db, task.id, "tool_refused"), []);
    assert.equal((await auditKinds(h.db.db, task.id, "tool_shadowed")).length, 1);
    const posts = await postsWhenAtLeast(h, second.ts, 2);
    assert.ok(
      posts.some((p) =>
        /Shadow mode: Trainee would have called issue_refund/.test(String(p.args.text)),
      ),
      "the proposal card is in the thread",
    );
    assert.equal((await refundsOf(h.db.db)).length, 1, "the shadow agent refunded nothing");
  });
});
