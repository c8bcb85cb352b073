import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { scriptByCase } from "../support/by-case.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import type { ScriptedReply } from "../support/model-server.ts";
import {
  auditEvents,
  postsWhenAtLeast,
  requestText,
  taskWithStatus,
  textOf,
  toolMessages,
} from "../support/observe.ts";

/**
 * Postgres refuses a NUL in text and jsonb, and a lone surrogate (half an emoji) in jsonb: one in
 * a reply, or left by one of Baton's own cuts, would fail the turn's write on every retry.
 */

function completion(message: Record<string, unknown>, finish_reason = "stop") {
  return {
    raw: {
      id: "chatcmpl-text",
      object: "chat.completion",
      created: 1_700_000_000,
      model: "gpt-4o-mini",
      choices: [{ index: 0, message: { role: "assistant", ...message }, finish_reason }],
      usage: { prompt_tokens: 10, completion_tokens: 10, total_tokens: 20 },
    },
  };
}

const ANSWER = "Order 1042 is in the warehouse.";
const EMOJI = "📦";

/** A transfer note too long to accept, whose arguments have an emoji across their 2,000th char. */
function longNoteArgs(): string {
  const prefix = '{"summary":"';
  return `${prefix}${"a".repeat(1999 - prefix.length)}${EMOJI}b","needed":"Ship it."}`;
}

/** A made-up tool name whose refusal, as the model reads it back, has an emoji across char 4,000. */
function longToolName(): string {
  const before = JSON.stringify({ error: 'There is no tool named "' }).slice(0, -2);
  return `${"x".repeat((3999 - before.length) % 2)}${EMOJI.repeat(2100)}`;
}

const cases: Record<string, (n: number) => ScriptedReply> = {
  "case-nul": () => completion({ content: "Order 1042 is in the\u0000 warehouse." }),
  "case-lone-half": () => completion({ content: `Order 1042 is in the warehouse. \ud83d` }),
  "case-args-nul": (n) =>
    n === 0
      ? completion(
          {
            content: null,
            tool_calls: [
              {
                id: "call_1",
                type: "function",
                function: { name: "lookup_order", arguments: '{"order_id":"1042\\u0000"}' },
              },
            ],
          },
          "tool_calls",
        )
      : { content: ANSWER },
  "case-long-note": (n) =>
    n === 0
      ? { toolCalls: [{ name: "transfer_to_fulfillment", arguments: longNoteArgs() }] }
      : { content: ANSWER },
  "case-long-name": (n) =>
    n === 0 ? { toolCalls: [{ name: longToolName(), arguments: {} }] } : { content: ANSWER },
  // 47,999 characters, then an emoji across the 48,000th, where the answer's audit is cut.
  "case-long-answer": () =>
    completion({ content: `${"word ".repeat(9599)}word${EMOJI}${" end".repeat(500)}` }),
};
const { script, calls } = scriptByCase(cases, 5);

let h: Harness;
before(async () => {
  h = await startHarness({ script });
});
after(async () => {
  await h.close();
});

const done = (ts: string) =>
  h.until("the task to finish", () => taskWithStatus(h.db.db, ts, "done"), 10_000);

test("a NUL in the model's answer is dropped: the answer is posted and stored at once", async () => {
  const { ts } = await h.mention("case-nul: where is order 1042?");
  const task = await done(ts);
  const [answer] = await auditEvents(h.db.db, task.id, "answer");
  assert.equal(answer?.data.text, ANSWER);
  const posts = await postsWhenAtLeast(h, ts, 1);
  assert.deepEqual(
    posts.map((p) => p.args.text),
    [ANSWER],
  );
  assert.equal(calls("case-nul"), 1, "the model is asked once");
});

test("half an emoji in the model's answer becomes a replacement character, not a failed turn", async () => {
  const { ts } = await h.mention("case-lone-half: where is order 1042?");
  const task = await done(ts);
  const [answer] = await auditEvents(h.db.db, task.id, "answer");
  assert.equal(answer?.data.text, `${ANSWER} \ufffd`);
  assert.equal(calls("case-lone-half"), 1);
});

test("a NUL escaped in tool arguments is dropped: the tool runs with the clean value", async () => {
  const { ts } = await h.mention("case-args-nul: where is order 1042?");
  const task = await done(ts);
  const toolCalls = await h.db.db
    .selectFrom("tool_calls")
    .select(["tool", "status", "args"])
    .where("task_id", "=", task.id)
    .execute();
  assert.deepEqual(toolCalls, [
    { tool: "lookup_order", status: "done", args: { order_id: "1042" } },
  ]);
  assert.equal(calls("case-args-nul"), 2);
});

test("a refused note's arguments are audited cut before an emoji, never through it", async () => {
  const { ts } = await h.mention("case-long-note: where is order 1042?");
  const task = await done(ts);
  const [refused] = await auditEvents(h.db.db, task.id, "tool_refused");
  assert.equal(refused?.data.reason, "invalid_arguments");
  assert.equal(refused?.data.arguments, longNoteArgs().slice(0, 1999));
  assert.equal(calls("case-long-note"), 2);
});

test("a tool error cut for the model ends on a whole emoji", async () => {
  const { ts } = await h.mention("case-long-name: where is order 1042?");
  await done(ts);
  const second = h.model.requests.filter((r) => requestText(r.body).includes("case-long-name"))[1];
  assert.ok(second, "the model is asked again with the refusal");
  const refusal = textOf(toolMessages(second.body).at(-1) ?? { role: "tool" });
  assert.ok(refusal.length > 3_900 && refusal.endsWith(`${EMOJI}…`), refusal.slice(-20));
  assert.ok(refusal.isWellFormed(), "no half emoji reaches the model");
});

test("a 50,000-character answer with an emoji across char 48,000 is answered and audited whole", async () => {
  const { ts } = await h.mention("case-long-answer: tell me everything");
  const task = await done(ts);
  const [answer] = await auditEvents(h.db.db, task.id, "answer");
  const text = String(answer?.data.text);
  assert.equal(text, `${"word ".repeat(9599)}word${EMOJI}${" end".repeat(500)}`);
  assert.equal(calls("case-long-answer"), 1);
});
