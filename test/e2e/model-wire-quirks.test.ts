import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { scriptByCase } from "../support/by-case.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import type { ScriptedReply } from "../support/model-server.ts";
import { auditEvents, postsWhenAtLeast, taskWithStatus } from "../support/observe.ts";

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
      ? { toolCalls: [{ name: "lookup_order", arguments: JSON.stringify(JSON.stringify(lookup)) }] }
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

for (const name of ["case-json-text", "case-tagged-text", "case-fenced-text"]) {
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
