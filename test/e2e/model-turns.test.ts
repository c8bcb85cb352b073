import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import type { ToolDefinition } from "../../src/core/tools/tool.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { auditStory } from "../../src/runtime/audit-story.ts";
import { BLOCKS_TEXT_BUDGET } from "../../src/slack/mrkdwn.ts";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { agentsFileWith, type Harness, startHarness } from "../support/harness.ts";
import { type ChatRequest, type Script, scriptByAgent } from "../support/model-server.ts";
import {
  auditEvents,
  postsInThread,
  taskInThread,
  taskWithStatus,
  textOf,
  toolMessages,
  waitForApprovalCard,
} from "../support/observe.ts";
import {
  assertFlowOneDoneOnce,
  flowOneByState,
  leaseLeftMs,
  playFlowOneOnce,
  whereIsMyOrderScript,
} from "../support/scripts.ts";
import {
  auditKinds,
  blockTexts,
  finishedTask,
  refundCall,
  refundsOf,
} from "../support/scripts-humans.ts";
import { BLOCKS_TEXT_MAX, blocksTextChars } from "../support/slack-emulator.ts";

// What the model sends back, turn by turn: null note fields, usable replies, repeated call ids,
// long and slow answers, the turn and hop limits, a hand-back to an agent gone, refused arguments.
// One suite per former test file.

describe("note-null-fields", async () => {
  // Models write `null` for an optional field they have nothing for: each note here is usable.
  const script = scriptByAgent({
    "customer-service": [
      {
        toolCalls: [
          {
            name: "transfer_to_fulfillment",
            arguments: {
              summary: "Order 1042 is stuck.",
              needed: "Find out why.",
              reason: null,
              deadline: null,
              confidence: null,
              artifact: null,
              facts: { order_id: "1042" },
            },
          },
        ],
      },
      {
        toolCalls: [
          {
            name: "escalate_to_human",
            arguments: {
              requester: "Dana",
              summary: "Order 1042 is stuck and the count is unknown.",
              reason: "Nobody can ship it today.",
              confidence: 0.5,
              lane: "operations",
              recommended_action: "Count the stock.",
              deadline: null,
              artifact: null,
              done: null,
            },
          },
        ],
      },
    ],
    fulfillment: [
      {
        toolCalls: [
          { name: "hand_back", arguments: { result: "Waiting on a count.", facts: null } },
        ],
      },
    ],
  });

  let h: Harness;
  before(async () => {
    h = await startHarness({ script });
  });
  after(async () => {
    await h.close();
  });

  test("null in a note's optional fields is read as absent, not as an unusable reply", async () => {
    const { ts } = await h.mention("where is order 1042?");
    const task = await h.until("the task to wait on a person", () =>
      taskWithStatus(h.db.db, ts, "waiting_human", "failed", "done"),
    );
    assert.equal(task.status, "waiting_human", task.failure_reason ?? "");
    assert.deepEqual(await auditKinds(h.db.db, task.id, "model_error"), []);
    const handoffs = await h.db.db
      .selectFrom("handoffs")
      .select(["kind", "note"])
      .where("task_id", "=", task.id)
      .where("kind", "<>", "start")
      .orderBy("step_no")
      .execute();
    assert.deepEqual(
      handoffs.map((row) => row.kind),
      ["transfer", "hand_back", "escalation"],
    );
    for (const { note } of handoffs)
      assert.ok(!Object.values(note as object).includes(null), JSON.stringify(note));
  });
});

describe("usable-reply-not-a-strike", async () => {
  const transfer = {
    name: "transfer_to_fulfillment",
    arguments: {
      summary: "Order 1042 is stuck.",
      needed: "Find out why and ship it.",
      facts: { order_id: "1042" },
    },
  };
  const script = scriptByAgent({
    "customer-service": [
      { toolCalls: [{ name: "lookup_order", arguments: "{bad" }] },
      { toolCalls: [{ name: "delete_everything", arguments: {} }] },
      // A third reply with one bad call beside a valid handoff: the handoff is usable work.
      { toolCalls: [{ name: "lookup_order", arguments: "{bad" }, transfer] },
    ],
    fulfillment: [{ content: "Order 1042 ships today." }],
  });

  let h: Harness;
  before(async () => {
    h = await startHarness({ script });
  });
  after(async () => {
    await h.close();
  });

  test("a reply that hands the task over is not counted as a third unusable reply", async () => {
    const { ts } = await h.mention("where is order 1042?");
    const task = await h.until("the task to end", async () => {
      const t = await taskInThread(h.db.db, ts);
      return t && (t.status === "done" || t.status === "failed") ? t : undefined;
    });
    await new Promise((r) => setTimeout(r, 500));
    const texts = postsInThread(h.slack, ts).map((p) => String(p.args.text));
    assert.equal(
      task.status,
      "done",
      `status ${task.status} (${task.failure_reason}); posts: ${texts.join(" | ")}`,
    );
    assert.equal(task.owner_id, "fulfillment");
  });
});

describe("duplicate-call-id", async () => {
  // An operator's tool with an outside effect: it counts its runs by idempotency key.
  const runs: string[] = [];
  const tools: ToolDefinition[] = demoTools.map((t) =>
    t.name === "lookup_order"
      ? {
          ...t,
          run: async (ctx, input) => {
            runs.push(ctx.idempotencyKey);
            return t.run(ctx, input);
          },
        }
      : t,
  );

  // The same call twice under one id (a server that repeats a call it streamed): one call, run once.
  const call = { id: "call_dup", name: "lookup_order", arguments: { order_id: "1042" } };
  const script = scriptByAgent({
    "customer-service": [
      { toolCalls: [call, call] },
      { content: "Order 1042 is in the warehouse." },
    ],
  });

  let h: Harness;
  before(async () => {
    h = await startHarness({ tools, script });
  });
  after(async () => {
    await h.close();
  });

  test("a tool call repeated under the same tool_call id runs once", async () => {
    const { ts } = await h.mention("where is order 1042?");
    await h.until("the task to finish", () => taskWithStatus(h.db.db, ts, "done"));
    assert.equal(runs.length, 1, `the tool ran under keys ${runs.join(", ")}`);
    const second = h.model.requestsFor("customer-service")[1];
    const answers = (second?.body.messages ?? []).filter((m) => m.role === "tool");
    assert.equal(answers.length, 1, "one call, one answer: ids stay unique in the conversation");
  });
});

describe("long-answer", async () => {
  // A model that lists everything: 30,000 characters with & and <, more than Slack takes in one
  // message's blocks (it refuses about 12,000 with msg_blocks_too_long, as the emulator does): the
  // answer goes out as several messages, each broken at a line.
  const LINE = "Order 1042 & 1043: <pending> pick, pack & ship; ETA 3 days (R&D < ops).";
  const ANSWER = Array.from({ length: 420 }, (_, i) => `${i + 1}. ${LINE}`).join("\n");

  let h: Harness;
  let threadTs: string;
  before(async () => {
    assert.ok(ANSWER.length >= 30_000);
    h = await startHarness({
      script: scriptByAgent({ "customer-service": [{ content: ANSWER }] }),
    });
    const { ts } = await h.mention("where are all my orders?");
    threadTs = ts;
    await h.until("the task to finish with its answer in Slack", () => finishedTask(h.db.db, ts));
  });
  after(async () => {
    await h.close();
  });

  test("a 30,000-character answer shows whole in the thread, in several messages, each at a line", async () => {
    assert.deepEqual(
      h.slack.calls.filter((c) => c.failed).map((c) => `${c.method}: ${c.failed}`),
      [],
      "Slack refused nothing",
    );
    const parts = postsInThread(h.slack, threadTs).filter((c) =>
      blockTexts(c).some((t) => t.includes("Order 1042")),
    );
    assert.ok(parts.length >= 5, `${parts.length} messages`);
    for (const part of parts) {
      const chars = blocksTextChars(part.args.blocks);
      assert.ok(chars <= BLOCKS_TEXT_BUDGET && chars < BLOCKS_TEXT_MAX, `${chars} characters`);
      assert.equal(part.args.username, "Customer Service");
    }
    // Every line, whole and in order, escaped: no half entity, no raw < or &, nothing cut.
    const shown = parts.map((p) => blockTexts(p).join("\n")).join("\n");
    assert.doesNotMatch(shown, /The answer was cut/);
    assert.doesNotMatch(shown, /<|&(?!amp;|lt;|gt;)/);
    const unescaped = shown.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
    assert.equal(unescaped, ANSWER);
  });
});

describe("slow-model", async () => {
  const LEASE_MS = 600;

  let h: Harness | undefined;
  after(async () => {
    await h?.close();
  });

  test("a model slower than the lease: its run renews the lease while it waits, and the flow ends once", async () => {
    let slowed = false;
    let leaseLeft: number | undefined;
    const harness: Harness = await startHarness({
      leaseMs: LEASE_MS,
      script: flowOneByState(async (agent) => {
        // Customer Service's first answer takes three leases: the task's job comes due meanwhile (it
        // is due when the lease would run out), and any replica could take the task over.
        if (agent === "customer-service" && !slowed) {
          slowed = true;
          await new Promise((resolve) => setTimeout(resolve, LEASE_MS * 2.5));
          leaseLeft = await leaseLeftMs(harness.db.db);
          await new Promise((resolve) => setTimeout(resolve, LEASE_MS * 0.5));
        }
      }),
    });
    h = harness;
    await playFlowOneOnce(harness);
    assert.ok(
      leaseLeft !== undefined && leaseLeft > 0,
      `the lease was renewed while the model was slow (${leaseLeft} ms left, 2.5 leases in)`,
    );
    assert.equal(
      harness.model.requestsFor("customer-service").length,
      3,
      "Customer Service was asked three times (lookup, transfer, answer), its slow first turn once",
    );
  });
});

describe("turn-limit", async () => {
  // A small local model stuck in a loop calls the same read tool again and again and never answers.
  // Every reply was usable (an allowed tool, valid arguments), so no strike stopped it: 150 model
  // calls and 600,000 tokens later the task still ran, each call resending the whole stint.

  const TURN_LIMIT = 5;
  const agentsFile = agentsFileWith(["turn_limit: 25", `turn_limit: ${TURN_LIMIT}`]);
  const script: Script = () => ({
    toolCalls: [{ name: "lookup_order", arguments: { order_id: "1042" } }],
  });

  let h: Harness;
  before(async () => {
    h = await startHarness({ script, agentsFile });
  });
  after(async () => {
    await h.close();
  });

  test("an agent that calls tool after tool without an answer is stopped at the turn limit", async () => {
    const { ts } = await h.mention("where is order 1042?");
    const task = await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"));
    assert.equal(h.model.requests.length, TURN_LIMIT);
    assert.match(task.failure_reason ?? "", /took 5 turns in a row without an answer/);
    assert.equal((await auditEvents(h.db.db, task.id, "task_failed")).length, 1);
    const notice = await h.until("the failure notice", async () =>
      postsInThread(h.slack, ts).find((p) => /task failed/i.test(String(p.args.text))),
    );
    assert.match(String(notice.args.text), /the limit is 5/);
  });
});

describe("turn-limit-nudges", async () => {
  // A looping model that gives an empty reply now and then: Baton's nudge after each ("Your last
  // reply was empty…") is no person's word, and no answer, so it must not start the count afresh.
  // Before, 4 calls and an empty reply, over and over, passed both the turn limit of 5 and the
  // three unusable replies in a row: the task ran until the script gave up at 40 calls.
  const TURN_LIMIT = 5;
  const agentsFile = agentsFileWith(["turn_limit: 25", `turn_limit: ${TURN_LIMIT}`]);
  const script: Script = (_request, { callIndex }) => {
    if (callIndex >= 40) return { content: "Order 1042 is on its way." };
    if (callIndex % TURN_LIMIT === TURN_LIMIT - 1) return { content: "" };
    return { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1042" } }] };
  };

  let h: Harness;
  before(async () => {
    h = await startHarness({ script, agentsFile });
  });
  after(async () => {
    await h.close();
  });

  test("empty replies between tool calls do not reset the turn limit", async () => {
    const { ts } = await h.mention("where is order 1042?");
    const task = await h.until("the task to end", async () => {
      const row = await taskInThread(h.db.db, ts);
      return row && row.status !== "active" ? row : undefined;
    });
    assert.equal(task.status, "failed", "the loop was stopped, not answered at the script's end");
    assert.match(task.failure_reason ?? "", /took 5 turns in a row without an answer/);
    assert.equal(h.model.requests.length, TURN_LIMIT);
  });
});

describe("turn-limit-decision", async () => {
  // turn_limit 3: billing uses its 3 turns (the last asks for the refund), a lead approves. The
  // decision starts the count afresh: the agent checks the order once more and answers (2 turns, under
  // the limit). Before, the approved refund ran and the task was then failed for its turns.
  const agentsFile = agentsFileWith(["turn_limit: 25", "turn_limit: 3"]);
  assert.equal(agentsFile.defaults.turn_limit, 3, "agents.yml no longer sets turn_limit: 25");
  let h: Harness;
  before(async () => {
    h = await startHarness({
      agentsFile,
      script: scriptByAgent({
        billing: [
          { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1077" } }] },
          { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1077" } }] },
          refundCall(),
          { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1077" } }] },
          { content: "Refunded 149 USD." },
        ],
      }),
    });
  });
  after(async () => {
    await h.close();
  });

  test("after a decision the count starts afresh: two turns after it are within a limit of 3", async () => {
    const { ts } = await h.mention("billing: please refund order 1077");
    const approval = await waitForApprovalCard(h);
    await h.clickCard("U0BILLINGLEAD", APPROVAL_APPROVE, approval, ts);
    await h.until("the refund", async () => (await refundsOf(h.db.db)).length === 1 || undefined);
    const settled = await h.until(
      "the task to end",
      async () =>
        (await taskWithStatus(h.db.db, ts, "failed")) ??
        (await taskWithStatus(h.db.db, ts, "done")),
    );
    const posts = postsInThread(h.slack, ts).map((p) => String(p.args.text));
    assert.equal(settled.status, "done", `${settled.failure_reason} | ${posts.join(" || ")}`);
  });
});

describe("hop-limit-exact", async () => {
  // Flow 1 is exactly four handoffs: CS → F → I → F → CS. With hop_limit: 4 no handoff goes past
  // the limit, yet Customer Service, handed the finished work back, is never asked to answer.
  const agentsFile = agentsFileWith(["hop_limit: 12", "hop_limit: 4"]);

  let h: Harness;
  before(async () => {
    h = await startHarness({ script: scriptByAgent(whereIsMyOrderScript()), agentsFile });
  });
  after(async () => {
    await h.close();
  });

  test("a chain of exactly hop_limit handoffs may still answer the requester", async () => {
    const { ts } = await h.mention("where is order 1042?");
    const task = await h.until("the task to settle", async () => {
      const t = await taskInThread(h.db.db, ts);
      return t && (t.status === "done" || t.status === "failed") ? t : undefined;
    });
    assert.equal(task.status, "done", `${task.failure_reason}`);
    assert.equal(task.hop_count, 4);
    await h.until("Customer Service's answer", async () =>
      postsInThread(h.slack, ts).find(
        (p) => p.args.username === "Customer Service" && /on the way/.test(String(p.args.text)),
      ),
    );
  });
});

describe("hand-back-removed-agent", async () => {
  // Customer Service hands to a returns desk, which hands to Inventory. The operator then removes the
  // returns desk from the agents file and restarts Baton while Inventory still holds the task.
  const agent = (id: string, name: string, handoffs: string[]) => `
  - id: ${id}
    name: ${name}
    icon: ":bust_in_silhouette:"
    tools: [check_stock]
    handoffs: [${handoffs.join(", ")}]
    instructions: Help with the order.`;
  const file = (agents: string) =>
    parseAgentsFile(
      `defaults:\n  entry_agent: customer-service\nagents:${agents}\n`,
      "removed-agent.yml",
      new Set(demoTools.map((t) => t.name)),
    );
  const before_ = file(
    agent("customer-service", "Customer Service", ["returns-desk"]) +
      agent("returns-desk", "Returns Desk", ["inventory"]) +
      agent("inventory", "Inventory", []),
  );
  const after_ = file(
    agent("customer-service", "Customer Service", ["inventory"]) +
      agent("inventory", "Inventory", []),
  );

  const transfer = (to: string) => ({
    toolCalls: [
      {
        name: `transfer_to_${to}`,
        arguments: { summary: "Check the lamp's stock.", needed: "A stock count.", facts: {} },
      },
    ],
  });
  // Inventory's model is down until the restart: its job fails and waits for its retry.
  const firstScript: Script = (_request, ctx) => {
    if (ctx.agentId === "customer-service") return transfer("returns-desk");
    if (ctx.agentId === "returns-desk") return transfer("inventory");
    return { error: "the model is down", status: 500 };
  };
  const secondScript: Script = (request, ctx) => {
    if (ctx.agentId === "inventory")
      return {
        toolCalls: [{ name: "hand_back", arguments: { result: "14 lamps on hand.", facts: {} } }],
      };
    const handedBack = request.messages.some((m) =>
      /handed back: 14 lamps/.test(String(m.content)),
    );
    return { content: handedBack ? "We have 14 lamps in stock." : "Unexpected request." };
  };

  let h: Harness;
  before(async () => {
    h = await startHarness({ script: firstScript, agentsFile: before_ });
  });
  after(async () => {
    await h.close();
  });

  test("a hand-back passes an agent removed from the agents file and reaches the one before it", async () => {
    const { ts } = await h.mention("do we have the oak lamp in stock?");
    await h.until("Inventory to be asked", async () => h.model.requestsFor("inventory").length > 0);
    await h.restart({ script: secondScript, agentsFile: after_ });

    const task = await h.until("the task to be done", () => taskWithStatus(h.db.db, ts, "done"));
    const handoffs = await h.db.db
      .selectFrom("handoffs")
      .select(["kind", "from_id", "to_id"])
      .where("task_id", "=", task.id)
      .where("kind", "in", ["transfer", "hand_back"])
      .orderBy("created_at")
      .execute();
    assert.deepEqual(
      handoffs.map((x) => `${x.kind} ${x.from_id}->${x.to_id}`),
      [
        "transfer customer-service->returns-desk",
        "transfer returns-desk->inventory",
        "hand_back inventory->customer-service",
      ],
    );
    assert.deepEqual(task.handback_stack, [], "the chain unwound past the removed agent");
    // Done in the database first; the answer reaches Slack right after.
    await h.until("Customer Service's answer in the thread", async () =>
      postsInThread(h.slack, ts).find(
        (c) =>
          c.args.username === "Customer Service" && /14 lamps in stock/.test(String(c.args.text)),
      ),
    );
  });
});

describe("audit-refused-arguments", async () => {
  // A tool call whose arguments the tool's schema refuses is refused like a call outside the agent's
  // role: the audit names the tool, what the model sent and why, and nothing of it runs.

  let h: Harness | undefined;
  after(async () => {
    await h?.close();
  });

  /** What the model was told of its refused call: the next request's last tool message. */
  function toldInNext(request: { body: ChatRequest } | undefined): string {
    assert.ok(request, "the model is asked again after the refusal");
    const told = textOf(toolMessages(request.body).at(-1) ?? { role: "tool", content: "" });
    return String((JSON.parse(told) as { error?: unknown }).error);
  }

  const NOT_JSON = '{"order_id": "1042"';
  const BAD_COUNT = { sku: "LAMP-OAK", counted_quantity: "fourteen", reason: "ok" };

  test("a call whose arguments fail its schema is audited as a refused call, told in words, and has no effect", async () => {
    const flow = whereIsMyOrderScript();
    const [lookup, ...customerService] = flow["customer-service"] ?? [];
    const [checkStock, ...inventory] = flow.inventory ?? [];
    assert.ok(lookup && checkStock);
    const script = scriptByAgent({
      ...flow,
      // Not JSON at all, then a write whose count is a word and whose reason is too short.
      "customer-service": [
        { toolCalls: [{ name: "lookup_order", arguments: NOT_JSON }] },
        lookup,
        ...customerService,
      ],
      inventory: [
        checkStock,
        { toolCalls: [{ name: "adjust_stock", arguments: BAD_COUNT }] },
        ...inventory,
      ],
    });
    h = await startHarness({ script });
    const harness = h;
    const { ts } = await harness.mention("where is order 1042?");
    const task = await harness.until("the task to finish", () =>
      taskWithStatus(harness.db.db, ts, "done"),
    );
    assert.deepEqual(script.remaining(), { "customer-service": 0, fulfillment: 0, inventory: 0 });
    // Nothing of the refused calls ran: one stock adjustment, and no tool_calls row for them.
    await assertFlowOneDoneOnce(
      { db: harness.db.db, slack: harness.slack, until: harness.until },
      task,
      ts,
    );
    assert.equal(task.model_errors, 0, "each refusal counted, and the next good reply cleared it");

    const refused = await auditEvents(harness.db.db, task.id, "tool_refused");
    assert.deepEqual(
      refused.map((e) => ({
        actor: `${e.actor_kind}:${e.actor_id}`,
        tool: e.data.tool,
        reason: e.data.reason,
        arguments: e.data.arguments,
      })),
      [
        {
          actor: "agent:customer-service",
          tool: "lookup_order",
          reason: "invalid_arguments",
          arguments: NOT_JSON,
        },
        {
          actor: "agent:inventory",
          tool: "adjust_stock",
          reason: "invalid_arguments",
          arguments: JSON.stringify(BAD_COUNT),
        },
      ],
    );
    // Why: the words the model was told, as it was told them.
    assert.equal(
      refused[0]?.data.message,
      toldInNext(harness.model.requestsFor("customer-service")[1]),
    );
    assert.equal(refused[1]?.data.message, toldInNext(harness.model.requestsFor("inventory")[2]));
    assert.deepEqual(await auditEvents(harness.db.db, task.id, "model_error"), []);

    const { entries } = await auditStory(harness.baton.deps, task.id);
    const lines = entries
      .filter((e) => e.kind === "tool_refused" || e.kind === "tool_call")
      .map((e) => `${e.actor} ${e.text}`);
    assert.match(
      lines[0] ?? "",
      /^agent:customer-service Refused lookup_order\(\{"order_id": "1042"\): arguments are not valid JSON \(.+\)\.$/,
    );
    assert.equal(
      lines[1],
      'agent:customer-service lookup_order(order_id="1042") → done; allowed by policy:read',
    );
    const inventoryLines = lines.filter((l) => l.startsWith("agent:inventory"));
    assert.match(
      inventoryLines[1] ?? "",
      /^agent:inventory Refused adjust_stock\(sku="LAMP-OAK", counted_quantity="fourteen", reason="ok"\): arguments do not match the schema: counted_quantity: .*number.*; reason: .*\.$/,
    );
    assert.match(
      inventoryLines[2] ?? "",
      /^agent:inventory adjust_stock\(.*counted_quantity=14.*\) → done/,
    );
  });
});
