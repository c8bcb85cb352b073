import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { MAX_CALLS_PER_REPLY } from "../../src/core/dispatch.ts";
import { harnessPerTest } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { textOf, toolMessages } from "../support/observe.ts";
import { auditKinds, finishedTask, toolCallsOf } from "../support/scripts-humans.ts";

// What Baton runs of one model reply: a model looping inside a reply runs nothing twice, and not
// without end.

const lookup = (id: string, order_id: string) => ({
  id,
  name: "lookup_order",
  arguments: { order_id },
});

describe("reply-call-limits", () => {
  const startHarness = harnessPerTest();

  test("the same read twice in one reply runs once, and both calls are answered", async () => {
    const h = await startHarness({
      script: scriptByAgent({
        "customer-service": [
          { toolCalls: [lookup("call_1", "1042"), lookup("call_2", "1042")] },
          { content: "Order 1042 is stuck in fulfillment." },
        ],
      }),
    });
    const { ts } = await h.mention("where is order 1042?");
    const task = await h.until("the task to finish", () => finishedTask(h.db.db, ts));
    assert.equal(task.status, "done", task.failure_reason ?? "");
    assert.equal((await toolCallsOf(h.db.db, task.id, "lookup_order")).length, 1);
    const answers = toolMessages(
      h.model.requestsFor("customer-service")[1]?.body ?? { messages: [] },
    );
    assert.deepEqual(
      answers.map((m) => m.tool_call_id),
      ["call_1", "call_2"],
    );
    const repeat = JSON.parse(textOf(answers[1] ?? { role: "tool", content: "{}" })) as {
      repeat_of?: string;
      result?: unknown;
    };
    assert.equal(repeat.repeat_of, "call_1");
    assert.deepEqual(
      repeat.result,
      JSON.parse(textOf(answers[0] ?? { role: "tool", content: "{}" })),
    );
  });

  test(`a reply asking for more than ${MAX_CALLS_PER_REPLY} calls runs the first ${MAX_CALLS_PER_REPLY}, and the model hears why`, async () => {
    const calls = Array.from({ length: MAX_CALLS_PER_REPLY + 5 }, (_, i) =>
      lookup(`call_${i}`, String(1000 + i)),
    );
    const h = await startHarness({
      script: scriptByAgent({
        "customer-service": [{ toolCalls: calls }, { content: "I looked those orders up." }],
      }),
    });
    const { ts } = await h.mention("look up every order from 1000 to 1024");
    const task = await h.until("the task to finish", () => finishedTask(h.db.db, ts));
    assert.equal(task.status, "done", task.failure_reason ?? "");
    assert.equal((await toolCallsOf(h.db.db, task.id, "lookup_order")).length, MAX_CALLS_PER_REPLY);
    const answers = toolMessages(
      h.model.requestsFor("customer-service")[1]?.body ?? { messages: [] },
    );
    assert.equal(answers.length, calls.length, "every call id is answered");
    const refused = answers.filter((m) => textOf(m).includes("tool calls at most"));
    assert.deepEqual(
      refused.map((m) => m.tool_call_id),
      calls.slice(MAX_CALLS_PER_REPLY).map((c) => c.id),
    );
    const errors = await auditKinds(h.db.db, task.id, "model_error");
    assert.deepEqual(
      errors.map((e) => [e.data.reason, e.data.not_run]),
      [["too_many_calls", 5]],
      "one event for the calls not run",
    );
  });
});
