import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { startBaton } from "../../src/app.ts";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { loadConfig } from "../../src/config/env.ts";
import { type ChatMessage, messageChars } from "../../src/core/model.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { createLogger } from "../../src/log.ts";
import { auditStory } from "../../src/runtime/audit-story.ts";
import { scriptByCase } from "../support/by-case.ts";
import { createTestDatabase } from "../support/db.ts";
import { freePort, type Harness, startHarness } from "../support/harness.ts";
import {
  type RecordedRequest,
  type ScriptedReply,
  scriptByAgent,
  startModelServer,
} from "../support/model-server.ts";
import { auditEvents, postsWhenAtLeast, taskWithStatus } from "../support/observe.ts";
import { startSlackEmulator } from "../support/slack-emulator.ts";

// Model servers other than OpenAI's: one that does not list an agent's model, or cannot be
// reached; calls written as text, a 400 for a call it could not parse, arguments encoded twice;
// and one that sends no token usage, while the caps still bind. One suite per former test file.

describe("model-check", async () => {
  /** Starts Baton with the project's agents.yml (every agent on gpt-4o-mini) and records its log. */
  async function startWith(
    openaiBaseUrl: string,
    check: (lines: Record<string, unknown>[]) => void,
  ) {
    const lines: Record<string, unknown>[] = [];
    const log = createLogger({
      // Debug: the check's own line says it is done, so "no warning" is not read before it.
      level: "debug",
      destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
    });
    const db = await createTestDatabase();
    const slack = await startSlackEmulator();
    const baton = await startBaton({
      config: loadConfig({
        SLACK_BOT_TOKEN: "xoxb-test",
        SLACK_SIGNING_SECRET: "secret",
        SLACK_API_URL: slack.url,
        OPENAI_API_KEY: "sk-test-key-not-real",
        OPENAI_BASE_URL: openaiBaseUrl,
        DATABASE_URL: db.url,
        PORT: String(await freePort()),
      }),
      log,
      maintenance: false,
    });
    try {
      const deadline = Date.now() + 10_000;
      for (;;) {
        try {
          check(lines);
          return;
        } catch (error) {
          if (Date.now() > deadline) throw error;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    } finally {
      await baton.stop();
      await slack.close();
      await db.drop();
    }
  }

  test("at start, a model the server does not list is named in the log, with the agents that use it", async () => {
    // An Ollama with llama3.1 only: agents.yml's gpt-4o-mini is not there.
    const model = await startModelServer(() => ({ content: "ok" }), { models: ["llama3.1"] });
    try {
      await startWith(model.baseURL, (lines) => {
        const warning = lines.find((l) => l.level === 40 && l.model === "gpt-4o-mini");
        assert.ok(warning, "a warning names the model");
        assert.deepEqual(warning.agents, [
          "customer-service",
          "fulfillment",
          "inventory",
          "billing",
        ]);
        assert.match(String(warning.msg), /does not list the model "gpt-4o-mini"/);
      });
    } finally {
      await model.close();
    }
  });

  test("at start, a model server that cannot be reached is named in the log with the setting to check", async () => {
    const nowhere = `http://127.0.0.1:${await freePort()}/v1`;
    await startWith(nowhere, (lines) => {
      const warning = lines.find((l) => l.level === 40 && /OPENAI_BASE_URL/.test(String(l.msg)));
      assert.ok(warning, JSON.stringify(lines.map((l) => l.msg)));
    });
  });

  test("at start, a base URL without its /v1 (Ollama's own root) is named in the log with what to set", async () => {
    const model = await startModelServer(() => ({ content: "ok" }), { models: ["gpt-4o-mini"] });
    try {
      // model.url is the server's root: its OpenAI API, and GET /models, are under /v1.
      await startWith(model.url, (lines) => {
        const warning = lines.find((l) => l.level === 40 && /OPENAI_BASE_URL/.test(String(l.msg)));
        assert.ok(warning, JSON.stringify(lines.map((l) => l.msg)));
        assert.match(String(warning.msg), /\/v1/);
        assert.doesNotMatch(String(warning.msg), /OPENAI_API_KEY/);
      });
    } finally {
      await model.close();
    }
  });

  test("at start, models the server lists bring no warning", async () => {
    const model = await startModelServer(() => ({ content: "ok" }), {
      models: ["gpt-4o-mini", "gpt-4.1"],
    });
    try {
      await startWith(model.baseURL, (lines) => {
        assert.ok(lines.some((l) => l.msg === "the model server lists every agent's model"));
        assert.deepEqual(
          lines.filter((l) => Number(l.level) >= 40).map((l) => l.msg),
          [],
        );
      });
    } finally {
      await model.close();
    }
  });
});

describe("model-wire-quirks", async () => {
  // What real OpenAI-compatible servers send besides well-formed tool calls: a small local model's
  // call written as text (Ollama, vLLM or llama.cpp when their parser misses it), Groq's 400 for a
  // call it could not parse, and arguments encoded twice.

  const answer = { content: "Order 1042 is in the warehouse." };
  const lookup = { order_id: "1042" };
  const cases: Record<string, (n: number) => ScriptedReply> = {
    // Qwen or Llama through a server whose tool parser missed it: the call as the reply's text.
    "case-json-text": (n) =>
      n === 0 ? { content: JSON.stringify({ name: "lookup_order", arguments: lookup }) } : answer,
    // Hermes-style tags, Llama 3's `parameters`, in a code fence.
    "case-tagged-text": (n) =>
      n === 0
        ? {
            content: `<tool_call>\n${JSON.stringify({ name: "lookup_order", arguments: lookup })}\n</tool_call>`,
          }
        : answer,
    "case-fenced-text": (n) =>
      n === 0
        ? {
            content: `\`\`\`json\n${JSON.stringify({ name: "lookup_order", parameters: lookup })}\n\`\`\``,
          }
        : answer,
    // Mistral Small 3.2, Magistral, Devstral: `[TOOL_CALLS]name[ARGS]{…}` (LM Studio, older Ollama).
    "case-mistral-named": (n) =>
      n === 0 ? { content: `[TOOL_CALLS]lookup_order[ARGS]${JSON.stringify(lookup)}` } : answer,
    // A tool the agent may not use, written as text: refused as a call, never posted.
    "case-text-refused": (n) =>
      n === 0
        ? {
            content: JSON.stringify({
              name: "issue_refund",
              arguments: { order_id: "1042", amount_usd: 20, reason: "asked" },
            }),
          }
        : { content: "I cannot refund; I have passed it on." },
    // Groq: the model's call did not parse, and the server answers 400 for it.
    "case-groq-failed": (n) =>
      n === 0
        ? {
            status: 400,
            raw: {
              error: {
                message:
                  "Failed to call a function. Please adjust your prompt. See 'failed_generation' for more details.",
                type: "invalid_request_error",
                code: "tool_use_failed",
                failed_generation: '<function=lookup_order{"order_id": "1042"}</function>',
              },
            },
          }
        : answer,
    // A gateway that encodes the arguments' JSON text as a JSON string once more.
    "case-double-encoded": (n) =>
      n === 0
        ? {
            toolCalls: [
              { name: "lookup_order", arguments: JSON.stringify(JSON.stringify(lookup)) },
            ],
          }
        : answer,
  };
  const { script, calls } = scriptByCase(cases, 10);

  let h: Harness;
  before(async () => {
    h = await startHarness({ script });
  });
  after(async () => {
    await h.close();
  });

  async function toolCallsOf(taskId: string) {
    return h.db.db
      .selectFrom("tool_calls")
      .select(["tool", "status"])
      .where("task_id", "=", taskId)
      .execute();
  }

  for (const name of [
    "case-json-text",
    "case-tagged-text",
    "case-fenced-text",
    "case-mistral-named",
  ]) {
    test(`a tool call written as the reply's text (${name}) is run, not posted to the requester`, async () => {
      const { ts } = await h.mention(`${name}: where is order 1042?`);
      const task = await h.until("the task to finish", () => taskWithStatus(h.db.db, ts, "done"));
      assert.deepEqual(await toolCallsOf(task.id), [{ tool: "lookup_order", status: "done" }]);
      const posts = await postsWhenAtLeast(h, ts, 1);
      assert.deepEqual(
        posts.map((p) => p.args.text),
        ["Order 1042 is in the warehouse."],
      );
      assert.equal(calls(name), 2);
    });
  }

  test("a call written as text to a tool outside the agent's role is refused, not posted", async () => {
    const { ts } = await h.mention("case-text-refused: refund order 1042");
    const task = await h.until("the task to finish", () => taskWithStatus(h.db.db, ts, "done"));
    assert.deepEqual(await toolCallsOf(task.id), []);
    const [refused] = await auditEvents(h.db.db, task.id, "tool_refused");
    assert.equal(refused?.data.tool, "issue_refund");
    const posts = await postsWhenAtLeast(h, ts, 1);
    assert.ok(!posts.some((p) => /issue_refund/.test(String(p.args.text))), "no JSON is posted");
  });

  test("Groq's tool_use_failed (400) is an unusable reply: the model is asked again, not the task failed", async () => {
    const { ts } = await h.mention("case-groq-failed: where is order 1042?");
    const task = await h.until("the task to finish", () => taskWithStatus(h.db.db, ts, "done"));
    assert.equal(calls("case-groq-failed"), 2);
    const errors = await auditEvents(h.db.db, task.id, "model_error");
    assert.equal(errors.length, 1);
    assert.match(String(errors[0]?.data.error), /could not read the model's tool call/);
    const posts = await postsWhenAtLeast(h, ts, 1);
    assert.deepEqual(
      posts.map((p) => p.args.text),
      ["Order 1042 is in the warehouse."],
    );
  });

  test("arguments encoded as a JSON string twice are read once more, and the tool runs", async () => {
    const { ts } = await h.mention("case-double-encoded: where is order 1042?");
    const task = await h.until("the task to finish", () => taskWithStatus(h.db.db, ts, "done"));
    assert.deepEqual(await toolCallsOf(task.id), [{ tool: "lookup_order", status: "done" }]);
    assert.deepEqual(await auditEvents(h.db.db, task.id, "model_error"), []);
  });
});

describe("cost-cap-no-usage", async () => {
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
    const task = await h.until("the task to be answered", () =>
      taskWithStatus(h.db.db, ts, "done"),
    );

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
});
