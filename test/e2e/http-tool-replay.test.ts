import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { CHANNEL, type Harness, startHarness } from "../support/harness.ts";
import type { Script } from "../support/model-server.ts";
import { finishedTask, toolCallsOf } from "../support/scripts-humans.ts";

// An HTTP tool that writes acts outside Baton's database: when its endpoint acts and then answers
// too late, the turn fails and is retried. The retry must send the same call under the same key,
// not ask the model again (which may word the call differently, or call something else).

const posts: { key: string; body: string }[] = [];
const refunds = new Map<string, string>();
const billing = createServer((req, res) => {
  let body = "";
  req.on("data", (chunk) => {
    body += chunk;
  });
  req.on("end", () => {
    const key = String(req.headers["idempotency-key"]);
    posts.push({ key, body });
    // The refund is made at once, once per key; the first answer comes after Baton stopped waiting.
    if (!refunds.has(key)) refunds.set(key, `R-${refunds.size + 1}`);
    const answer = () => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ refund: refunds.get(key) }));
    };
    if (posts.length === 1) setTimeout(answer, 1_500);
    else answer();
  });
});

const FILE = (url: string) => `
defaults:
  entry_agent: billing
agents:
  - id: billing
    name: Billing
    icon: ":credit_card:"
    instructions: Refund what the customer asks.
    tools: [refund_card]
tools:
  - name: refund_card
    description: Refund an amount to the customer's card.
    class: irreversible
    url: ${url}/refunds
    timeout: 1s
    parameters:
      type: object
      properties:
        order_id: { type: string }
        amount_usd: { type: number }
      required: [order_id, amount_usd]
`;

// Asked again for the same step, this model would refund a different amount.
let asked = 0;
const script: Script = (request) => {
  if (request.messages.some((m) => m.role === "tool"))
    return { content: "Refunded 40 USD for order 1077." };
  asked++;
  return {
    toolCalls: [
      { name: "refund_card", arguments: { order_id: "1077", amount_usd: 40 + asked - 1 } },
    ],
  };
};

let h: Harness;
before(async () => {
  await new Promise<void>((resolve) => billing.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(billing.address() as AddressInfo).port}`;
  const names = new Set(demoTools.map((t) => t.name));
  h = await startHarness({ script, agentsFile: parseAgentsFile(FILE(url), "billing.yml", names) });
});
after(async () => {
  await h.close();
  billing.closeAllConnections();
  billing.close();
});

test("an HTTP write that timed out is sent again as it was, under its key; the model is asked once", async () => {
  const { ts } = await h.mention("refund 40 USD on order 1077, the lamp broke");
  const task = await h.until("the task to finish", () => finishedTask(h.db.db, ts), 20_000);

  assert.equal(asked, 1, "the model was not asked again for the step that failed");
  assert.equal(posts.length, 2, "the timed-out call was sent again");
  assert.equal(posts[0]?.key, posts[1]?.key);
  assert.equal(posts[0]?.body, posts[1]?.body, "with the same arguments");
  assert.equal(refunds.size, 1, "one refund");
  const calls = await toolCallsOf(h.db.db, task.id, "refund_card");
  assert.deepEqual(
    calls.map((c) => [c.status, c.args, c.result]),
    [["done", { order_id: "1077", amount_usd: 40 }, { refund: "R-1" }]],
  );
  const modelCalls = await h.db.db
    .selectFrom("model_calls")
    .select("step_no")
    .where("task_id", "=", task.id)
    .execute();
  assert.equal(modelCalls.length, 2, "the refund's step and the answer's, each recorded once");
  assert.match(String(h.slack.messagesIn(CHANNEL, ts).at(-1)?.text), /Refunded 40 USD/);
});
