import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type Harness, REQUESTER, startHarness } from "../support/harness.ts";
import type { Script, ScriptedReply } from "../support/model-server.ts";
import {
  auditEvents,
  postsInThread,
  postsWhenAtLeast,
  requestText,
  taskWithStatus,
  textOf,
  toolMessages,
} from "../support/observe.ts";
import { runBaton } from "../support/slash-command.ts";

/**
 * Each test's request carries a case name; the model plays that case's replies in order.
 * One harness serves all cases, so a case never sees another's replies.
 */
const cases: Record<string, ScriptedReply[]> = {
  "case-malformed": [
    { toolCalls: [{ name: "lookup_order", arguments: '{"order_id": 10' }] },
    { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1042" } }] },
    { content: "Your order 1042 is waiting in the warehouse." },
  ],
  "case-unknown": [
    { toolCalls: [{ name: "delete_everything", arguments: { really: true } }] },
    { content: "I can only look orders up; nothing was deleted." },
  ],
  "case-empty": [{ toolCalls: [] }, { content: "Sorry, here is your answer after all." }],
  "case-three-strikes": [
    { toolCalls: [{ name: "lookup_order", arguments: "{not json" }] },
    { toolCalls: [{ name: "delete_everything", arguments: {} }] },
    { toolCalls: [] },
    { content: "never reached" },
  ],
  "case-blank-thrice": [{ toolCalls: [] }, { toolCalls: [] }, { toolCalls: [] }],
};
const used = new Map<string, number>();
let outage = true;

const script: Script = (request) => {
  const text = requestText(request);
  if (text.includes("case-outage"))
    return outage
      ? { status: 500, error: "the model is down" }
      : { content: "Back online: order 1042 is in the warehouse." };
  const name = Object.keys(cases).find((c) => text.includes(c));
  if (!name) throw new Error(`no case named in "${text}"`);
  const n = used.get(name) ?? 0;
  used.set(name, n + 1);
  const reply = cases[name]?.[n];
  if (!reply) throw new Error(`${name} ran out of replies`);
  return reply;
};

let h: Harness;
before(async () => {
  h = await startHarness({ script });
});
after(async () => {
  await h.close();
});

function requestsOf(caseName: string) {
  return h.model.requests.filter((r) => requestText(r.body).includes(caseName));
}

function lastToolError(caseName: string, index: number): string {
  const request = requestsOf(caseName)[index];
  assert.ok(request, `request ${index} of ${caseName}`);
  const text = textOf(toolMessages(request.body).at(-1) ?? { role: "tool", content: "" });
  // Tool results reach the model as JSON: `{"error": "..."}` for a refused call.
  return String((JSON.parse(text) as { error?: unknown }).error);
}

test("malformed tool arguments go back to the model as a tool error; the next valid reply continues", async () => {
  const { ts } = await h.mention("case-malformed: where is order 1042?");
  const task = await h.until("the task to finish", () => taskWithStatus(h.db.db, ts, "done"));

  // A refused call, as one outside the agent's role is: the tool, what was sent, and why.
  const refused = await auditEvents(h.db.db, task.id, "tool_refused");
  assert.equal(refused.length, 1);
  assert.equal(refused[0]?.data.tool, "lookup_order");
  assert.equal(refused[0]?.data.reason, "invalid_arguments");
  assert.equal(refused[0]?.data.arguments, '{"order_id": 10');
  assert.equal(refused[0]?.data.message, lastToolError("case-malformed", 1));
  assert.match(lastToolError("case-malformed", 1), /not valid JSON/);
  assert.deepEqual(await auditEvents(h.db.db, task.id, "model_error"), []);

  const toolCalls = await h.db.db
    .selectFrom("tool_calls")
    .select(["tool", "status"])
    .where("task_id", "=", task.id)
    .execute();
  assert.deepEqual(toolCalls, [{ tool: "lookup_order", status: "done" }]);
  assert.equal(task.model_errors, 0, "a good reply clears the count");
  const posts = await postsWhenAtLeast(h, ts, 1);
  assert.equal(posts.length, 1);
  assert.match(String(posts[0]?.args.text), /waiting in the warehouse/);
});

test("a call to an unknown tool goes back to the model as a tool error; the task still finishes", async () => {
  const { ts } = await h.mention("case-unknown: delete everything please");
  const task = await h.until("the task to finish", () => taskWithStatus(h.db.db, ts, "done"));

  const errors = await auditEvents(h.db.db, task.id, "model_error");
  assert.equal(errors.length, 1);
  assert.equal(errors[0]?.data.tool, "delete_everything");
  assert.equal(errors[0]?.data.reason, "unknown_tool");
  assert.match(lastToolError("case-unknown", 1), /no tool named "delete_everything"/);
  const toolCalls = await h.db.db
    .selectFrom("tool_calls")
    .selectAll()
    .where("task_id", "=", task.id)
    .execute();
  assert.deepEqual(toolCalls, []);
  const [answer] = await postsWhenAtLeast(h, ts, 1);
  assert.match(String(answer?.args.text), /nothing was deleted/);
  // Counted, but not under the name the model made up: /metrics would grow with every new one.
  const metrics = await (await fetch(`http://127.0.0.1:${h.baton.port}/metrics`)).text();
  assert.match(metrics, /baton_tool_calls_total\{tool="\(unknown\)",outcome="unknown_tool"\} 1/);
  assert.ok(!metrics.includes("delete_everything"));
});

test("an empty reply (no text, no tool calls) is an unusable reply; the model is asked again", async () => {
  const { ts } = await h.mention("case-empty: where is order 1042?");
  const task = await h.until("the task to finish", () => taskWithStatus(h.db.db, ts, "done"));

  const errors = await auditEvents(h.db.db, task.id, "model_error");
  assert.deepEqual(
    errors.map((e) => e.data.error),
    ["empty reply"],
  );
  const second = requestsOf("case-empty")[1];
  assert.ok(second);
  assert.ok(
    second.body.messages.some((m) => m.role === "user" && /reply was empty/.test(textOf(m))),
    "the model is told its reply was empty",
  );
  const posts = await postsWhenAtLeast(h, ts, 1);
  assert.equal(posts.length, 1);
  assert.match(String(posts[0]?.args.text), /answer after all/);
});

test("three unusable replies in a row fail the task, and the thread is told", async () => {
  const { ts } = await h.mention("case-three-strikes: where is order 1042?");
  const task = await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"));

  assert.equal(task.model_errors, 3);
  // What each reply did wrong, in order and in words: no cause that did not happen.
  const reason =
    "the AI model's replies could not be used 3 times in a row (it called a tool with arguments it does not take, called a tool that does not exist and gave an empty reply)";
  assert.equal(task.failure_reason, reason);
  assert.equal(requestsOf("case-three-strikes").length, 3, "the model is not asked a fourth time");
  // The malformed call is a refused call; the unknown tool and the empty reply, model errors.
  const refused = await auditEvents(h.db.db, task.id, "tool_refused");
  assert.deepEqual(
    refused.map((e) => e.data.reason),
    ["invalid_arguments"],
  );
  const errors = await auditEvents(h.db.db, task.id, "model_error");
  assert.equal(errors.length, 2);
  // The codes stay in the audit trail, for whoever runs Baton.
  const failed = await auditEvents(h.db.db, task.id, "task_failed");
  assert.equal(failed.length, 1);
  assert.deepEqual(failed[0]?.data.causes, [["invalid_arguments"], ["unknown_tool"], ["empty"]]);

  const [notice] = await postsWhenAtLeast(h, ts, 1);
  assert.match(String(notice?.args.text), /task failed/i);
  const shown = JSON.stringify(notice?.args.blocks);
  assert.ok(shown.includes(reason), shown);
  assert.match(shown, /Reply in this thread to have Baton try again/);
  assert.equal(postsInThread(h.slack, ts).length, 1, "no answer besides the notice");
});

test("/baton status of a failed task tells its requester why it stopped, right under its title", async () => {
  const { ts } = await h.mention("case-blank-thrice: where is order 1042?");
  const task = await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"));
  const { text } = await runBaton(h, `status ${task.id}`, { user: REQUESTER });
  const [title = "", because = "", details = ""] = text.split("\n");
  assert.match(title, /^\*case-blank-thrice: where is order 1042\?\*: failed, owned by /);
  assert.equal(
    because,
    "Stopped because the AI model's replies could not be used 3 times in a row (it gave an empty reply).",
  );
  // The id and counts come after the words: operators and the caps still read them.
  assert.match(
    details,
    new RegExp(`^Task \`${task.id}\` · 0 handoffs · [\\d,]+ tokens · [\\d.]+ USD$`),
  );
});

test("a model answering 500 to everything: the job retries, nothing is answered, nothing crashes", async () => {
  const { ts } = await h.mention("case-outage: where is order 1042?");
  // The OpenAI client tries 3 times per job attempt; a 4th request proves the job itself retried.
  await h.until("the job to retry", async () => requestsOf("case-outage").length >= 4, 30_000);

  const task = await taskWithStatus(h.db.db, ts, "active");
  assert.ok(task, "the task is neither done nor failed during the outage");
  assert.equal(task.step_no, 0, "no turn was committed");
  assert.deepEqual(postsInThread(h.slack, ts), [], "nothing was posted as an answer");
  const health = await fetch(new URL("/healthz", h.endpoint));
  assert.equal(await health.text(), "ok", "Baton is still up");

  // The outage ends: the retried job finishes the task, with one answer.
  outage = false;
  await h.until("the task to finish", () => taskWithStatus(h.db.db, ts, "done"), 30_000);
  const posts = await postsWhenAtLeast(h, ts, 1);
  assert.equal(posts.length, 1);
  assert.match(String(posts[0]?.args.text), /Back online/);
});
