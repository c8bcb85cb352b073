import assert from "node:assert/strict";
import { test } from "node:test";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { type Harness, harnessPerTest, SIGNING_SECRET } from "../support/harness.ts";
import { type AgentReply, scriptByAgent } from "../support/model-server.ts";
import { taskWithStatus, waitForApprovalCard } from "../support/observe.ts";
import { whereIsMyOrderScript } from "../support/scripts.ts";
import { finishedTask, orderReturnScript } from "../support/scripts-humans.ts";

const startHarness = harnessPerTest();

async function start(script: Record<string, AgentReply[]>): Promise<Harness> {
  return startHarness({ script: scriptByAgent(script) });
}

async function scrape(h: Harness): Promise<{ text: string; samples: Sample[] }> {
  const res = await fetch(`http://127.0.0.1:${h.baton.port}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain/);
  const text = await res.text();
  return { text, samples: parseExposition(text) };
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The Prometheus text exposition, one sample per line; comments (# HELP, # TYPE) skipped. */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(match, `an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      labels[key as string] = value as string;
    samples.push({ name: match[1] as string, labels, value: Number(match[3]) });
  }
  return samples;
}

function sampleSum(samples: Sample[], name: string, labels: Record<string, string> = {}) {
  const found = samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  return found.length === 0 ? undefined : found.reduce((sum, s) => sum + s.value, 0);
}

test("/metrics exposes handoffs, tokens, cost per completed task and approvals after flow 1", async () => {
  const h = await start(whereIsMyOrderScript());
  const { ts } = await h.mention("where is order 1042?");
  await h.until("the task to finish", () => taskWithStatus(h.db.db, ts, "done"));

  const { text, samples } = await scrape(h);

  for (const [kind, from, to] of [
    ["transfer", "customer-service", "fulfillment"],
    ["transfer", "fulfillment", "inventory"],
    ["hand_back", "inventory", "fulfillment"],
    ["hand_back", "fulfillment", "customer-service"],
  ] as const) {
    assert.equal(
      sampleSum(samples, "baton_handoffs_total", { kind, from, to }),
      1,
      `${from}->${to}`,
    );
  }
  assert.equal(sampleSum(samples, "baton_handoffs_total"), 4);

  // Each of the five stints (the start and the four handoffs) began with one observed latency.
  assert.equal(sampleSum(samples, "baton_handoff_latency_seconds_count"), 5);
  assert.equal(
    sampleSum(samples, "baton_handoff_latency_seconds_count", {
      kind: "start",
      to: "customer-service",
    }),
    1,
  );
  assert.equal(
    sampleSum(samples, "baton_handoff_latency_seconds_count", {
      kind: "hand_back",
      to: "fulfillment",
    }),
    1,
  );

  // Flow 1's five tool calls are timed, each under its tool.
  assert.equal(sampleSum(samples, "baton_tool_call_seconds_count", { outcome: "done" }), 5);
  assert.equal(
    sampleSum(samples, "baton_tool_call_seconds_count", { tool: "adjust_stock", outcome: "done" }),
    1,
  );

  const tokens = sampleSum(samples, "baton_model_tokens_total") ?? 0;
  assert.ok(tokens > 0, "model tokens are counted");
  assert.equal(sampleSum(samples, "baton_tasks_started_total"), 1);
  assert.equal(sampleSum(samples, "baton_tasks_finished_total", { outcome: "answered" }), 1);

  // The completed task's totals, once: the same tokens the ledger holds for it.
  assert.equal(sampleSum(samples, "baton_completed_task_tokens_count"), 1);
  assert.equal(sampleSum(samples, "baton_completed_task_cost_usd_count"), 1);
  const task = await taskWithStatus(h.db.db, ts, "done");
  assert.equal(sampleSum(samples, "baton_completed_task_tokens_sum"), task?.tokens);
  assert.equal(sampleSum(samples, "baton_completed_task_tokens_sum"), tokens);

  // Read from Postgres at scrape time: nothing waits.
  assert.equal(sampleSum(samples, "baton_approvals_waiting"), 0);
  assert.equal(sampleSum(samples, "baton_approval_oldest_wait_seconds"), 0);
  assert.ok(text.includes("# TYPE baton_escalations_total counter"));
  assert.ok(text.includes("# TYPE baton_job_failures_total counter"));
  assert.ok(text.includes("# TYPE baton_dead_letters_total counter"));

  for (const secret of ["xoxb-test", "sk-test-key-not-real", SIGNING_SECRET])
    assert.ok(!text.includes(secret), `no secret in /metrics: ${secret}`);
  assert.doesNotMatch(text, /xoxb-|\bsk-/);
});

test("/metrics serves Node's process metrics under the names standard dashboards query", async () => {
  const { text, samples } = await scrape(await start({}));
  for (const name of [
    "process_cpu_user_seconds_total",
    "process_resident_memory_bytes",
    "nodejs_eventloop_lag_seconds",
    "nodejs_heap_size_used_bytes",
  ])
    assert.notEqual(sampleSum(samples, name), undefined, `${name} is served`);
  assert.doesNotMatch(text, /^(# (HELP|TYPE) )?baton_(process|nodejs)_/m);
  assert.ok(text.includes("# TYPE baton_handoffs_total counter"), "Baton's own keep baton_");
});

test("a waiting approval shows in the gauges, and its decision time once the agent resumes", async () => {
  const h = await start(orderReturnScript());
  const { ts } = await h.mention("I'd like to return order 1077, please refund me");
  const approval = await waitForApprovalCard(h, "the refund to wait for approval");

  const waiting = (await scrape(h)).samples;
  assert.equal(sampleSum(waiting, "baton_approvals_waiting"), 1);
  assert.ok((sampleSum(waiting, "baton_approval_oldest_wait_seconds") ?? -1) >= 0);
  assert.equal(sampleSum(waiting, "baton_approval_decision_seconds_count"), undefined);

  await h.clickCard("U0LEE", APPROVAL_APPROVE, approval, ts);
  await h.until("the task to finish", () => finishedTask(h.db.db, ts));

  const decided = (await scrape(h)).samples;
  assert.equal(sampleSum(decided, "baton_approvals_waiting"), 0);
  assert.equal(sampleSum(decided, "baton_approval_oldest_wait_seconds"), 0);
  assert.equal(
    sampleSum(decided, "baton_approval_decision_seconds_count", { decision: "approved" }),
    1,
  );
  assert.equal(
    sampleSum(decided, "baton_handoff_latency_seconds_count", {
      kind: "approval_decision",
      to: "billing",
    }),
    1,
  );
  assert.equal(sampleSum(decided, "baton_completed_task_tokens_count"), 1);
});
