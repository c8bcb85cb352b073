import assert from "node:assert/strict";
import { test } from "node:test";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import { CHANNEL, type Harness, harnessPerTest, REQUESTER } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { auditEvents, taskWithStatus } from "../support/observe.ts";
import { blockTexts, cardWithButton } from "../support/scripts-humans.ts";
import { runBaton } from "../support/slash-command.ts";

const startHarness = harnessPerTest();

/** Customer Service alone, with the given caps; it would look two orders up, then answer. */
function agentsWithCaps(caps: string) {
  return parseAgentsFile(
    `
defaults:
  entry_agent: customer-service
agents:
  - id: customer-service
    name: Customer Service
    icon: ":speech_balloon:"
    tools: [lookup_order]
    instructions: Look the order up, then tell the requester where it is.
    caps: ${caps}
`,
    "cost-cap.yml",
    new Set(demoTools.map((t) => t.name)),
  );
}

const lookupThenAnswer = () => [
  { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1042" } }] },
  { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1077" } }] },
  { content: "Your order 1042 is stuck in fulfillment; we are on it." },
];

async function start(caps: string, replies: number): Promise<Harness> {
  const script = Array.from({ length: replies }, lookupThenAnswer).flat();
  return startHarness({
    script: scriptByAgent({ "customer-service": script }),
    agentsFile: agentsWithCaps(caps),
  });
}

async function escalationOf(h: Harness, taskId: string) {
  return h.db.db
    .selectFrom("escalations")
    .selectAll()
    .where("task_id", "=", taskId)
    .executeTakeFirst();
}

test("a task over its agent's token cap stops and goes to a person, with a note that says so", async () => {
  const h = await start("{ tokens_per_task: 50 }", 1);
  const { ts } = await h.mention("where is order 1042?");
  const task = await h.until("the task to go to a person", () =>
    taskWithStatus(h.db.db, ts, "waiting_human"),
  );

  // The model server bills chars/4: the first call stays under 50 tokens, the second goes over.
  assert.ok(task.tokens >= 50);
  assert.equal(h.model.requests.length, 2, "no model call once the task is over its cap");
  assert.equal(task.owner_kind, "human");
  assert.equal(task.owner_id, CHANNEL, "no lane configured: the task's channel owns it");

  const escalation = await escalationOf(h, task.id);
  assert.ok(escalation);
  assert.equal(escalation.status, "open");
  const note = escalation.note as { reason?: string; lane?: string };
  assert.equal(note.lane, "owner_escalation");
  assert.match(note.reason ?? "", /Stopped automatically/);
  assert.match(note.reason ?? "", new RegExp(`used ${task.tokens} model tokens`));
  assert.match(note.reason ?? "", /Customer Service's cap of 50 per task/);
  const [stopped, ...more] = await auditEvents(h.db.db, task.id, "task_stopped");
  assert.equal(more.length, 0);
  assert.ok(stopped);
  assert.match(String((stopped.data as { reason?: string }).reason), /cap of 50 per task/);

  const card = await h.until("the escalation card in the thread", async () =>
    cardWithButton(h.slack, ts, ESCALATION_TAKE_OVER),
  );
  assert.match(blockTexts(card).join("\n"), /cap of 50 per task/);
  // Baton wrote this note: its requester is a mention, not "<@U0REQUESTER>" spelled out.
  const texts = JSON.stringify(card.args.blocks);
  assert.ok(texts.includes(`*Requester*\\n<@${REQUESTER}>`), texts);
  assert.ok(!texts.includes("&lt;@"), "no escaped mention on the card");
  // `/baton status` says it in words, and names the owning channel as a channel.
  const status = await runBaton(h, `status ${task.id}`);
  assert.match(status.text, new RegExp(`: waiting on a person, owned by <#${CHANNEL}>`));
  const orderAnswered = h.slack
    .callsTo("chat.postMessage")
    .some((c) => c.args.thread_ts === ts && /stuck in fulfillment/.test(String(c.args.text)));
  assert.equal(orderAnswered, false, "the agent never answered past its cap");
});

test("the per-day cap counts the agent's spend across tasks: a new task stops before any model call", async () => {
  // One scripted call costs about 0.00001 USD at gpt-4o-mini prices: the first spends the day.
  const h = await start("{ usd_per_day: 0.000001 }", 2);
  const first = await h.mention("where is order 1042?");
  const firstTask = await h.until("the first task to go to a person", () =>
    taskWithStatus(h.db.db, first.ts, "waiting_human"),
  );
  assert.ok(Number(firstTask.cost_usd) >= 0.000001);
  assert.equal(h.model.requests.length, 1);

  const second = await h.mention("and where is order 1077?");
  const secondTask = await h.until("the second task to go to a person", () =>
    taskWithStatus(h.db.db, second.ts, "waiting_human"),
  );
  assert.equal(secondTask.tokens, 0);
  assert.equal(h.model.requests.length, 1, "the second task made no model call");

  for (const task of [firstTask, secondTask]) {
    const note = (await escalationOf(h, task.id))?.note as { reason?: string } | undefined;
    assert.match(note?.reason ?? "", /today \(UTC\), over its cap of 0\.000001 USD per day/);
  }
});
