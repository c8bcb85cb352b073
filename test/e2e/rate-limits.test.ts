import assert from "node:assert/strict";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { loadAgentsFile } from "../../src/config/agents-file.ts";
import type { AgentsFile, RateLimits } from "../../src/config/agents-schema.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { CHANNEL, harnessPerTest, REQUESTER, SIGNING_SECRET } from "../support/harness.ts";
import { type AgentReply, scriptByAgent } from "../support/model-server.ts";
import {
  auditKinds,
  finishedTask,
  lastToolMessage,
  refundCall,
  refundsOf,
  taskOfThread,
  toolCallsOf,
} from "../support/scripts-humans.ts";
import { appMentionEvent, deliverEvent, messageEvent } from "../support/slack-signing.ts";

// policies.rate_limits: a tool's runs across all tasks, and the new tasks one person may start.

const startHarness = harnessPerTest();

const HOUR = 3_600_000;

async function withLimits(rateLimits: Partial<RateLimits>): Promise<AgentsFile> {
  const file = await loadAgentsFile(
    fileURLToPath(new URL("../../agents.yml", import.meta.url)),
    new Set(demoTools.map((t) => t.name)),
  );
  return {
    ...file,
    policies: { ...file.policies, rate_limits: { tools: [], ...rateLimits } },
  };
}

test("a tool past its rate limit is refused in another task, recorded, and the model is told", async () => {
  const refund = { order_id: "1077", amount_usd: 40, reason: "Scratched on arrival" };
  const answer: AgentReply = (request) => ({ content: `Result: ${lastToolMessage(request)}` });
  const call = refundCall(refund);
  const h = await startHarness({
    script: scriptByAgent({ billing: [call, answer, call, answer] }),
    agentsFile: await withLimits({ tools: [{ tool: "issue_refund", max: 1, per: HOUR }] }),
  });

  const first = await h.mention("billing: refund 40 USD on order 1077, it came scratched");
  const firstTask = await h.until("the first refund", () => finishedTask(h.db.db, first.ts));
  const second = await h.mention("billing: refund 40 USD on order 1077 again please", {
    user: "U0SOMEONEELSE",
  });
  const secondTask = await h.until("the second task's answer", () =>
    finishedTask(h.db.db, second.ts),
  );

  assert.equal((await refundsOf(h.db.db)).length, 1, "one refund, from the first task");
  assert.deepEqual(
    (await toolCallsOf(h.db.db, firstTask.id, "issue_refund")).map((c) => c.status),
    ["done"],
  );
  const refused = await toolCallsOf(h.db.db, secondTask.id, "issue_refund");
  assert.deepEqual(
    refused.map((c) => c.status),
    ["rate_limited"],
  );
  const told = h.model.requestsFor("billing").at(-1);
  const toolMessage = told ? lastToolMessage(told.body) : "";
  assert.match(toolMessage, /Not run: issue_refund may run at most once in 1 hour/);
  const [audit] = await auditKinds(h.db.db, secondTask.id, "tool_refused");
  assert.equal((audit?.data as { reason?: string } | undefined)?.reason, "rate_limited");
  const reply = h.slack.messagesIn(CHANNEL, second.ts).at(-1);
  assert.match(String(reply?.text), /Not run/);
});

test("a person past new_tasks_per_person is told and no task starts; replies and others go on", async () => {
  const hello: AgentReply = { content: "Happy to help." };
  const h = await startHarness({
    script: scriptByAgent({ "customer-service": Array.from({ length: 5 }, () => hello) }),
    agentsFile: await withLimits({ new_tasks_per_person: { max: 2, per: HOUR } }),
  });

  const one = await h.mention("where is order 1042?");
  await h.mention("and order 1077?");
  await h.until("both answered", async () =>
    (await h.db.db.selectFrom("tasks").select("id").where("status", "=", "done").execute())
      .length === 2
      ? true
      : undefined,
  );

  // The third arrives as app_mention and as message at once (twin events), then again as Slack's retry.
  const third = h.slack.addMessage({
    channel: CHANNEL,
    user: REQUESTER,
    text: "<@U0BATONBOT> and order 1001?",
  });
  const fields = { user: REQUESTER, channel: CHANNEL, text: third.text ?? "", ts: third.ts };
  const deliveries = await Promise.all([
    deliverEvent(h.endpoint, SIGNING_SECRET, appMentionEvent(fields), { eventId: "EvLIMIT0001" }),
    deliverEvent(h.endpoint, SIGNING_SECRET, messageEvent(fields), { eventId: "EvLIMIT0002" }),
  ]);
  assert.deepEqual(
    deliveries.map((d) => d.status),
    [200, 200],
  );
  const told = await h.until("the person to be told", async () =>
    h.slack.ephemerals.find((e) => e.user === REQUESTER),
  );
  assert.match(String(told.text), /You started 2 tasks in the last hour,/);
  const retry = await deliverEvent(h.endpoint, SIGNING_SECRET, appMentionEvent(fields), {
    eventId: "EvLIMIT0001",
    retryNum: 1,
  });
  assert.equal(retry.status, 200);
  assert.equal(await taskOfThread(h.db.db, third.ts), undefined, "no task for the third");
  assert.equal(
    h.slack.ephemerals.filter((e) => e.user === REQUESTER).length,
    1,
    "told once, whichever events carried the message",
  );

  // A reply in a task's thread is not a new task; someone else may still start one.
  await h.reply(one.ts, "thanks, and the tracking number?");
  const other = await h.mention("is order 1090 shipped?", { user: "U0OTHERPERSON" });
  await h.until("the other person's task", () => finishedTask(h.db.db, other.ts));
  await h.until("the reply answered", async () =>
    h.model.requestsFor("customer-service").length === 4 ? true : undefined,
  );
  const tasks = await h.db.db.selectFrom("tasks").select("requester_id").execute();
  assert.deepEqual(
    tasks.map((t) => t.requester_id).sort(),
    [REQUESTER, REQUESTER, "U0OTHERPERSON"].sort(),
  );
});

test("a read tool with a rate limit is counted in its turn's transaction too", async () => {
  const lookup = (order: string): AgentReply => ({
    toolCalls: [{ name: "lookup_order", arguments: { order_id: order } }],
  });
  const answer: AgentReply = (request) => ({ content: `Last: ${lastToolMessage(request)}` });
  const h = await startHarness({
    script: scriptByAgent({ "customer-service": [lookup("1042"), lookup("1077"), answer] }),
    agentsFile: await withLimits({ tools: [{ tool: "lookup_order", max: 1, per: HOUR }] }),
  });
  const { ts } = await h.mention("where are orders 1042 and 1077?");
  const task = await h.until("the answer", () => finishedTask(h.db.db, ts));
  assert.deepEqual(
    (await toolCallsOf(h.db.db, task.id, "lookup_order")).map((c) => c.status),
    ["done", "rate_limited"],
  );
  assert.match(String(h.slack.messagesIn(CHANNEL, ts).at(-1)?.text), /Not run: lookup_order/);
});
