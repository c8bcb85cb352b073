import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { messageChars, priceOf, toolChars } from "../../src/core/model.ts";
import { createLogger } from "../../src/log.ts";
import { scriptByCase } from "../support/by-case.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import type { ChatRequest, ScriptedReply } from "../support/model-server.ts";
import {
  auditEvents,
  postsWhenAtLeast,
  requestText,
  taskInThread,
  taskWithStatus,
} from "../support/observe.ts";

/** A full chat.completion body, for answers the scripted replies cannot express. */
function completion(message: Record<string, unknown>, finish_reason: string) {
  return {
    raw: {
      id: "chatcmpl-review",
      object: "chat.completion",
      created: 1_700_000_000,
      model: "gpt-4o-mini",
      choices: [{ index: 0, message: { role: "assistant", ...message }, finish_reason }],
      usage: { prompt_tokens: 10, completion_tokens: 10, total_tokens: 20 },
    },
  };
}

/** What Groq says a model wrote when it could not read it as a tool call. */
const FAILED_GENERATION = '<function=lookup_order{"order_id": "1042"}</function>';

const cases: Record<string, (n: number) => ScriptedReply> = {
  // A prompt-injected model that keeps asking for a tool outside its role.
  "case-insists": () => ({
    toolCalls: [
      { name: "issue_refund", arguments: { order_id: "1042", amount_usd: 20, reason: "asked" } },
    ],
  }),
  // An answer cut off at the model's output limit.
  "case-length": () =>
    completion({ content: "Your order 1042 is stuck because the", refusal: null }, "length"),
  // Cut off once (a local model's small max_tokens), then a whole answer when asked again.
  "case-cut-once": (n) =>
    n === 0
      ? completion({ content: "Order 1042 is in the ware", refusal: null }, "length")
      : { content: "Order 1042 is in the warehouse and ships today." },
  // OpenAI's refusal: no content, the refusal in its own field.
  "case-refusal": () =>
    completion({ content: null, refusal: "I'm sorry, I can't help with that request." }, "stop"),
  // A compatible server that sends tool arguments as an object, not a JSON string.
  "case-object-args": (n) =>
    n === 0
      ? completion(
          {
            content: null,
            tool_calls: [
              {
                id: "call_1",
                type: "function",
                function: { name: "lookup_order", arguments: { order_id: "1042" } },
              },
            ],
          },
          "tool_calls",
        )
      : { content: "Order 1042 is in the warehouse." },
  // A server that sends content as an array of parts.
  "case-content-parts": () =>
    completion({ content: [{ type: "text", text: "Order 1042 is in the warehouse." }] }, "stop"),
  // A content filter (Azure OpenAI) that stopped the reply midway: what it left is a fragment.
  "case-filter-partial": () =>
    completion(
      { content: "Sure, the customer's home address is", refusal: null },
      "content_filter",
    ),
  "case-filter-empty": () => completion({ content: null }, "content_filter"),
  "case-filter-words": () => completion({ content: null }, "content_filter"),
  // Cut off every time: the task fails, and says that, not another cause.
  "case-length-words": () =>
    completion({ content: "Your order 1042 is stuck because the", refusal: null }, "length"),
  "case-filter-counted": () =>
    completion(
      { content: "Sure, the customer's home address is", refusal: null },
      "content_filter",
    ),
  // A refusal beside content "" rather than null.
  "case-blank-refusal": () =>
    completion({ content: "", refusal: "I'm sorry, I can't help with that request." }, "stop"),
  // A compatible server that leaves `type` out of its tool calls.
  "case-no-type": (n) =>
    n === 0
      ? completion(
          {
            content: null,
            tool_calls: [
              {
                id: "call_1",
                function: { name: "lookup_order", arguments: '{"order_id":"1042"}' },
              },
            ],
          },
          "tool_calls",
        )
      : { content: "Order 1042 is in the warehouse." },
  // A proxy passing an upstream hiccup through: 200, and no choices.
  "case-no-choices": (n) =>
    n === 0
      ? { raw: { id: "chatcmpl-empty", object: "chat.completion", choices: [] } }
      : { content: "Order 1042 is in the warehouse." },
  // A reasoning model behind a server with no reasoning parser (llama.cpp, vLLM, LM Studio).
  "case-think": () =>
    completion(
      {
        content:
          "<think>Internal note: order 1042 was mis-picked by Bob.</think>\n\nOrder 1042 is in the warehouse.",
      },
      "stop",
    ),
  // A template that opens the <think> block in the prompt (DeepSeek-R1's, QwQ's): the reply holds
  // only its close.
  "case-unopened-think": () =>
    completion(
      {
        content:
          "The requester asks about 1042. Internal note: Bob mis-picked it.\n</think>\n\nOrder 1042 is in the warehouse.",
      },
      "stop",
    ),
  // Its reasoning, cut before any answer, then an answer when asked again.
  "case-open-think": (n) =>
    n === 0
      ? completion({ content: "<think>Order 1042 was mis-picked by Bob, so" }, "stop")
      : { content: "Order 1042 is in the warehouse." },
  // Groq: the model ran on the whole prompt, wrote a call the server could not read, and the
  // server answered 400 with no usage.
  "case-groq-unread": (n) =>
    n === 0
      ? {
          status: 400,
          raw: {
            error: {
              message:
                "Failed to call a function. Please adjust your prompt. See 'failed_generation' for more details.",
              type: "invalid_request_error",
              code: "tool_use_failed",
              failed_generation: FAILED_GENERATION,
            },
          },
        }
      : { content: "Order 1042 is in the warehouse." },
};
const { script, calls } = scriptByCase(cases, 30);

let h: Harness;
/** Baton's warnings and errors, for the operator's side of a failed task. */
const warnings: { msg?: string; taskId?: string; reason?: string }[] = [];
before(async () => {
  h = await startHarness({
    script,
    log: createLogger({
      level: "warn",
      destination: { write: (line: string) => void warnings.push(JSON.parse(line)) },
    }),
  });
});
after(async () => {
  await h.close();
});

test("a model that keeps calling a tool outside its allowlist is stopped, and the thread is told", async () => {
  const { ts } = await h.mention("case-insists: refund me 20 USD for order 1042");
  const task = await h.until(
    "the task to stop",
    () => taskWithStatus(h.db.db, ts, "failed", "waiting_human"),
    10_000,
  );
  assert.ok(calls("case-insists") <= 5, `the model was asked ${calls("case-insists")} times`);
  const [notice] = await postsWhenAtLeast(h, ts, 1);
  assert.ok(notice, "the thread is told");
  assert.equal((await h.db.db.selectFrom("refunds").selectAll().execute()).length, 0);
  assert.ok(task);
});

test("an answer cut off at the output limit (finish_reason=length) is not posted as the answer", async () => {
  const { ts } = await h.mention("case-length: where is order 1042?");
  await h.until(
    "the task to settle",
    async () => {
      const t = await taskInThread(h.db.db, ts);
      return t && t.status !== "active" ? t : undefined;
    },
    10_000,
  );
  const task = await taskInThread(h.db.db, ts);
  assert.notEqual(task?.status, "done", "a cut-off answer does not finish the task");
  const posts = await postsWhenAtLeast(h, ts, 1);
  assert.ok(
    !posts.some((p) => String(p.args.text) === "Your order 1042 is stuck because the"),
    "the half sentence is not posted as the agent's answer",
  );
  assert.equal(calls("case-length"), 3, "three unusable replies stop the task");
});

test("one answer cut off at the output limit is asked again, and the whole answer posted", async () => {
  const { ts } = await h.mention("case-cut-once: where is order 1042?");
  const task = await h.until("the task to finish", () => taskWithStatus(h.db.db, ts, "done"));
  assert.equal(calls("case-cut-once"), 2);
  const asked = h.model.requests.filter((r) => requestText(r.body).includes("case-cut-once"));
  const nudge = asked[1]?.body.messages.findLast((m) => m.role === "user");
  assert.match(String(nudge?.content), /cut off at your output limit/);
  const posts = await postsWhenAtLeast(h, ts, 1);
  assert.ok(posts.some((p) => /ships today/.test(String(p.args.text))));
  assert.ok(!posts.some((p) => /in the ware$/.test(String(p.args.text))));
  assert.ok(task);
});

test("a refusal reaches the thread instead of being counted as three empty replies", async () => {
  const { ts } = await h.mention("case-refusal: where is order 1042?");
  await h.until(
    "the task to settle",
    async () => {
      const t = await taskInThread(h.db.db, ts);
      return t && t.status !== "active" ? t : undefined;
    },
    10_000,
  );
  const posts = await postsWhenAtLeast(h, ts, 1);
  assert.ok(
    posts.some((p) => /can't help with that/.test(String(p.args.text))),
    `the refusal is told: ${posts.map((p) => p.args.text).join(" | ")}`,
  );
  assert.equal(calls("case-refusal"), 1, "the model is not asked again and again");
});

test("tool arguments sent as an object do not crash the turn", async () => {
  const { ts } = await h.mention("case-object-args: where is order 1042?");
  const task = await h.until(
    "the task to finish",
    () => taskWithStatus(h.db.db, ts, "done"),
    8_000,
  );
  const modelCalls = await h.db.db
    .selectFrom("model_calls")
    .select("step_no")
    .where("task_id", "=", task.id)
    .execute();
  assert.equal(modelCalls.length, 2, "both replies were turns: the first did not crash the job");
  const toolCalls = await h.db.db
    .selectFrom("tool_calls")
    .select(["tool", "status"])
    .where("task_id", "=", task.id)
    .execute();
  assert.deepEqual(toolCalls, [{ tool: "lookup_order", status: "done" }]);
});

test("content sent as an array of text parts is answered, not a crash", async () => {
  const { ts } = await h.mention("case-content-parts: where is order 1042?");
  await h.until("the task to finish", () => taskWithStatus(h.db.db, ts, "done"), 8_000);
  const posts = await postsWhenAtLeast(h, ts, 1);
  assert.match(String(posts[0]?.args.text), /in the warehouse/);
});

/** The task once it is no longer active. */
async function settled(ts: string) {
  return h.until(
    "the task to settle",
    async () => {
      const t = await taskInThread(h.db.db, ts);
      return t && t.status !== "active" ? t : undefined;
    },
    10_000,
  );
}

test("a reply stopped by a content filter is withheld, not posted as the answer, and audited", async () => {
  const { ts } = await h.mention("case-filter-partial: what is the customer's address?");
  const task = await settled(ts);
  assert.equal(task.status, "failed");
  assert.match(task.failure_reason ?? "", /content filter withheld its answer/);
  const [failed] = await auditEvents(h.db.db, task.id, "task_failed");
  assert.match(String(failed?.data.reason), /content filter/);
  const posts = await postsWhenAtLeast(h, ts, 1);
  assert.ok(
    !posts.some((p) => /home address is/.test(JSON.stringify(p.args))),
    "the filtered fragment is not posted",
  );
  assert.equal(calls("case-filter-partial"), 1, "the model is not asked again for the same");
});

test("a content filter that left nothing is told as withheld, not as malformed tool calls", async () => {
  const { ts } = await h.mention("case-filter-empty: what is the customer's address?");
  const task = await settled(ts);
  assert.equal(task.status, "failed");
  assert.match(task.failure_reason ?? "", /content filter/);
  assert.doesNotMatch(task.failure_reason ?? "", /malformed/);
});

test("a reply stopped by a content filter counts its tokens and cost, though the task stops", async () => {
  const { ts } = await h.mention("case-filter-counted: what is the customer's address?");
  const task = await settled(ts);
  assert.equal(task.status, "failed");
  assert.match(task.failure_reason ?? "", /content filter withheld its answer/);
  const calls = await h.db.db
    .selectFrom("model_calls")
    .select(["prompt_tokens", "completion_tokens", "usage_estimated", "cost_usd"])
    .where("task_id", "=", task.id)
    .execute();
  assert.equal(calls.length, 1);
  assert.deepEqual(
    calls.map((c) => [c.prompt_tokens, c.completion_tokens, c.usage_estimated]),
    [[10, 10, false]],
    "the server's count",
  );
  assert.ok(Number(calls[0]?.cost_usd) > 0);
  assert.equal(task.tokens, 20);
  assert.equal(Number(task.cost_usd), Number(calls[0]?.cost_usd));
  const conversation = await h.db.db
    .selectFrom("conversation")
    .select("message")
    .where("task_id", "=", task.id)
    .execute();
  assert.ok(
    !conversation.some((c) => /home address is/.test(JSON.stringify(c.message))),
    "the filtered fragment is not kept",
  );
  // The operator hears of it too, as of any task that fails.
  const warned = warnings.find((w) => w.msg === "task failed" && w.taskId === task.id);
  assert.match(
    warned?.reason ?? "",
    /content filter withheld its answer/,
    JSON.stringify(warnings),
  );
});

/** The failure notice a settled task's thread was sent: its text and blocks as Slack got them. */
async function failureNoticeIn(ts: string): Promise<string> {
  const posts = await postsWhenAtLeast(h, ts, 1);
  const notice = posts.find((p) => /task failed/i.test(String(p.args.text)));
  assert.ok(notice, "the thread is told");
  return JSON.stringify([notice.args.text, notice.args.blocks]);
}

test("answers cut off at the length limit every time fail the task with that cause, in plain words", async () => {
  const { ts } = await h.mention("case-length-words: where is order 1042?");
  const task = await settled(ts);
  assert.equal(task.status, "failed");
  const reason = "the AI model's answers were cut off at its length limit 3 times";
  assert.equal(task.failure_reason, reason);
  const notice = await failureNoticeIn(ts);
  assert.ok(notice.includes(reason), notice);
  // No cause that did not happen, and no server terms.
  assert.doesNotMatch(notice, /empty|malformed|unknown tool|its role|finish_reason|unusable/);
  assert.match(notice, /Reply in this thread to have Baton try again/);
  const [failed] = await auditEvents(h.db.db, task.id, "task_failed");
  assert.deepEqual(failed?.data.causes, [["cut_off"], ["cut_off"], ["cut_off"]]);
});

test("a content filter's stop is told in plain words; its finish_reason stays in the audit trail and the log", async () => {
  const { ts } = await h.mention("case-filter-words: what is the customer's address?");
  const task = await settled(ts);
  assert.equal(task.status, "failed");
  assert.equal(task.failure_reason, "the AI model's content filter withheld its answer");
  const notice = await failureNoticeIn(ts);
  assert.match(notice, /the AI model's content filter withheld its answer/);
  assert.doesNotMatch(notice, /finish_reason|content_filter/);
  assert.match(notice, /Reply in this thread to have Baton try again/);
  const [failed] = await auditEvents(h.db.db, task.id, "task_failed");
  assert.equal(failed?.data.finish_reason, "content_filter");
  const warned = warnings.find((w) => w.msg === "task failed" && w.taskId === task.id);
  assert.equal(
    (warned as { finish_reason?: string } | undefined)?.finish_reason,
    "content_filter",
    JSON.stringify(warnings),
  );
});

test('a refusal beside content "" reaches the thread', async () => {
  const { ts } = await h.mention("case-blank-refusal: where is order 1042?");
  const task = await h.until("the task to finish", () => taskWithStatus(h.db.db, ts, "done"));
  const [answer] = await postsWhenAtLeast(h, ts, 1);
  assert.match(String(answer?.args.text), /can't help with that/);
  assert.equal(task.model_errors, 0);
  assert.equal(calls("case-blank-refusal"), 1);
});

test("a tool call without `type` is run", async () => {
  const { ts } = await h.mention("case-no-type: where is order 1042?");
  const task = await h.until("the task to finish", () => taskWithStatus(h.db.db, ts, "done"));
  const toolCalls = await h.db.db
    .selectFrom("tool_calls")
    .select(["tool", "status"])
    .where("task_id", "=", task.id)
    .execute();
  assert.deepEqual(toolCalls, [{ tool: "lookup_order", status: "done" }]);
});

test("a 200 with no choices is retried like a 500, and the task is answered", async () => {
  const { ts } = await h.mention("case-no-choices: where is order 1042?");
  const task = await h.until(
    "the task to finish",
    () => taskWithStatus(h.db.db, ts, "done"),
    30_000,
  );
  assert.equal(calls("case-no-choices"), 2);
  assert.deepEqual(await auditEvents(h.db.db, task.id, "model_error"), []);
  const posts = await postsWhenAtLeast(h, ts, 1);
  assert.deepEqual(
    posts.map((p) => p.args.text),
    ["Order 1042 is in the warehouse."],
  );
});

for (const [caseName, what] of [
  ["case-think", "a reasoning model's leading <think> block"],
  ["case-unopened-think", "reasoning whose <think> the prompt opened (only its </think> sent)"],
]) {
  test(`${what} is not posted; the answer after its </think> is`, async () => {
    const { ts } = await h.mention(`${caseName}: where is order 1042?`);
    const task = await h.until("the task to finish", () => taskWithStatus(h.db.db, ts, "done"));
    const posts = await postsWhenAtLeast(h, ts, 1);
    assert.deepEqual(
      posts.map((p) => p.args.text),
      ["Order 1042 is in the warehouse."],
    );
    const [answer] = await auditEvents(h.db.db, task.id, "answer");
    assert.equal(answer?.data.text, "Order 1042 is in the warehouse.");
  });
}

test("a <think> block left open is no answer: the model is asked again, nothing of it is posted", async () => {
  const { ts } = await h.mention("case-open-think: where is order 1042?");
  const task = await h.until("the task to finish", () => taskWithStatus(h.db.db, ts, "done"));
  const errors = await auditEvents(h.db.db, task.id, "model_error");
  assert.deepEqual(
    errors.map((e) => e.data.error),
    ["empty reply"],
  );
  const posts = await postsWhenAtLeast(h, ts, 1);
  assert.deepEqual(
    posts.map((p) => p.args.text),
    ["Order 1042 is in the warehouse."],
  );
});

/** The characters a request sent: its messages and its tool definitions. */
function sentChars(body: ChatRequest): number {
  const tools = (body.tools ?? []) as {
    function: { name: string; description: string; parameters: Record<string, unknown> };
  }[];
  return (
    messageChars(body.messages as Parameters<typeof messageChars>[0]) +
    toolChars(tools.map((t) => t.function))
  );
}

test("a tool call the server could not read (tool_use_failed) counts its tokens, estimated, toward the task's and its cost", async () => {
  const { ts } = await h.mention("case-groq-unread: where is order 1042?");
  const task = await h.until("the task to finish", () => taskWithStatus(h.db.db, ts, "done"));
  const [failed, answered, ...more] = await h.db.db
    .selectFrom("model_calls")
    .selectAll()
    .where("task_id", "=", task.id)
    .orderBy("step_no")
    .execute();
  assert.equal(more.length, 0);
  assert.ok(failed && answered);
  const request = h.model.requests.find(
    (r) => r.status === 400 && requestText(r.body).includes("case-groq-unread"),
  );
  assert.ok(request, "the failed call was made");
  assert.equal(failed.usage_estimated, true);
  assert.equal(failed.prompt_tokens, Math.ceil(sentChars(request.body) / 3));
  assert.equal(failed.completion_tokens, Math.ceil(FAILED_GENERATION.length / 3));
  const price = priceOf(failed.model);
  assert.ok(price, `${failed.model} has a price`);
  const cost =
    (failed.prompt_tokens * price.input_per_million +
      failed.completion_tokens * price.output_per_million) /
    1_000_000;
  assert.ok(cost > 0);
  assert.equal(Number(failed.cost_usd), Number(cost.toFixed(6)));
  assert.equal(answered.usage_estimated, false);
  assert.equal(
    task.tokens,
    failed.prompt_tokens +
      failed.completion_tokens +
      answered.prompt_tokens +
      answered.completion_tokens,
  );
  // Each row's cost is rounded to the micro-dollar as stored; the task's adds them unrounded.
  const rows = Number(failed.cost_usd) + Number(answered.cost_usd);
  assert.ok(Math.abs(Number(task.cost_usd) - rows) <= 2e-6, `${task.cost_usd} vs ${rows}`);
});
