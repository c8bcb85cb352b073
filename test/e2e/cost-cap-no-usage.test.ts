import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { type ChatMessage, messageChars } from "../../src/core/model.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { createLogger } from "../../src/log.ts";
import { auditStory } from "../../src/runtime/audit-story.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { type RecordedRequest, scriptByAgent } from "../support/model-server.ts";
import { taskWithStatus } from "../support/observe.ts";

// A model server that sends no `usage` (an older vLLM or llama.cpp, some gateways): Baton counts
// each call's tokens from its characters, 1 token per 3 rounded up, so the caps still bind.

let current: Harness | undefined;
afterEach(async () => {
  await current?.close();
  current = undefined;
});

const MODEL = "llama3.1";
const PRICE = { input_per_million: 100, output_per_million: 200 };

function agentsFile(caps: string) {
  return parseAgentsFile(
    `
defaults:
  entry_agent: customer-service
  model: ${MODEL}
prices:
  ${MODEL}: { input_per_million: ${PRICE.input_per_million}, output_per_million: ${PRICE.output_per_million} }
agents:
  - id: customer-service
    name: Customer Service
    icon: ":speech_balloon:"
    tools: [lookup_order]
    instructions: Look the order up, then tell the requester where it is.
    caps: ${caps}
`,
    "no-usage.yml",
    new Set(demoTools.map((t) => t.name)),
  );
}

const lookup = (orderId: string) => ({
  toolCalls: [{ name: "lookup_order", arguments: { order_id: orderId } }],
  withoutUsage: true as const,
});
const ANSWER = "Your order 1042 is stuck in fulfillment; we are on it.";

/** What Baton sent: the messages' characters and its tool definitions'. */
function sentChars(request: RecordedRequest): number {
  const tools = (request.body.tools ?? []) as {
    function: { name: string; description: string; parameters: unknown };
  }[];
  return (
    messageChars(request.body.messages as ChatMessage[]) +
    tools.reduce(
      (n, t) =>
        n +
        t.function.name.length +
        t.function.description.length +
        JSON.stringify(t.function.parameters).length,
      0,
    )
  );
}

const lookupChars = (orderId: string) =>
  "lookup_order".length + JSON.stringify({ order_id: orderId }).length;

async function modelCalls(h: Harness, taskId: string) {
  return h.db.db
    .selectFrom("model_calls")
    .selectAll()
    .where("task_id", "=", taskId)
    .orderBy("step_no")
    .execute();
}

test("a server that sends no usage: the tokens are estimated from characters, and the token cap binds", async () => {
  const h = await startHarness({
    script: scriptByAgent({
      "customer-service": [lookup("1042"), lookup("1077"), { content: ANSWER }],
    }),
    agentsFile: agentsFile("{ tokens_per_task: 50 }"),
  });
  current = h;
  const { ts } = await h.mention("where is order 1042?");
  const task = await h.until("the task to go to a person", () =>
    taskWithStatus(h.db.db, ts, "waiting_human"),
  );
  assert.equal(h.model.requests.length, 1, "the first call's estimate is over the cap");

  const [call, ...more] = await modelCalls(h, task.id);
  assert.equal(more.length, 0);
  assert.ok(call);
  const request = h.model.requests[0] as RecordedRequest;
  assert.equal(call.usage_estimated, true);
  assert.equal(call.prompt_tokens, Math.ceil(sentChars(request) / 3));
  assert.equal(call.completion_tokens, Math.ceil(lookupChars("1042") / 3));
  assert.equal(task.tokens, call.prompt_tokens + call.completion_tokens);
  const note = (
    await h.db.db
      .selectFrom("escalations")
      .select("note")
      .where("task_id", "=", task.id)
      .executeTakeFirstOrThrow()
  ).note as { reason?: string };
  assert.match(note.reason ?? "", new RegExp(`used ${task.tokens} model tokens`));
});

test("a server that sends no usage: the estimate is priced from the agents file, and the USD cap binds", async () => {
  const h = await startHarness({
    script: scriptByAgent({
      "customer-service": [lookup("1042"), lookup("1077"), { content: ANSWER }],
    }),
    // A cap the first call's estimate (some hundreds of tokens, at 100 USD per million) is over.
    agentsFile: agentsFile("{ usd_per_task: 0.00001 }"),
  });
  current = h;
  const { ts } = await h.mention("where is order 1042?");
  const task = await h.until("the task to go to a person", () =>
    taskWithStatus(h.db.db, ts, "waiting_human"),
  );
  assert.equal(h.model.requests.length, 1, "no model call once the task is over its cap");
  const [call] = await modelCalls(h, task.id);
  assert.ok(call?.usage_estimated);
  const cost =
    (call.prompt_tokens * PRICE.input_per_million +
      call.completion_tokens * PRICE.output_per_million) /
    1_000_000;
  assert.equal(Number(call.cost_usd), Number(cost.toFixed(6)));
  assert.equal(Number(task.cost_usd), Number(call.cost_usd));
});

test("a server that sends no usage is logged once per model, and the audit story says the tokens are estimated", async () => {
  const lines: Record<string, unknown>[] = [];
  const h = await startHarness({
    log: createLogger({
      level: "warn",
      destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
    }),
    script: scriptByAgent({
      // Two calls without usage, then one with it.
      "customer-service": [lookup("1042"), lookup("1077"), { content: ANSWER }],
    }),
    agentsFile: agentsFile("{ tokens_per_task: 100000 }"),
  });
  current = h;
  const { ts } = await h.mention("where is order 1042?");
  const task = await h.until("the task to be answered", () => taskWithStatus(h.db.db, ts, "done"));

  const calls = await modelCalls(h, task.id);
  assert.deepEqual(
    calls.map((c) => c.usage_estimated),
    [true, true, false],
  );
  const answered = calls[2];
  assert.ok(answered);
  assert.equal(
    answered.prompt_tokens,
    Math.ceil((h.model.requests[2]?.promptChars ?? 0) / 4),
    "the server's own count, as it sent it",
  );
  assert.equal(
    task.tokens,
    calls.reduce((n, c) => n + c.prompt_tokens + c.completion_tokens, 0),
  );
  const warnings = lines.filter((l) => /sent no token usage/.test(String(l.msg)));
  assert.equal(warnings.length, 1, JSON.stringify(warnings));
  assert.equal(warnings[0]?.model, MODEL);

  const { entries } = await auditStory({ db: h.db.db }, task.id);
  const story = entries.filter((e) => e.kind === "model_call").map((e) => e.text);
  assert.equal(story.length, 3);
  assert.match(story[0] ?? "", /completion tokens \(estimated: the server sent no usage\), \$/);
  assert.match(story[1] ?? "", /\(estimated: the server sent no usage\)/);
  assert.doesNotMatch(story[2] ?? "", /estimated/);
});
