import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { loadAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { createLogger } from "../../src/log.ts";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { type Harness, harnessPerTest, SIGNING_SECRET, startHarness } from "../support/harness.ts";
import { type AgentReply, type ChatRequest, scriptByAgent } from "../support/model-server.ts";
import { taskWithStatus, waitForApprovalCard } from "../support/observe.ts";
import { whereIsMyOrderScript } from "../support/scripts.ts";
import { finishedTask, orderReturnScript } from "../support/scripts-humans.ts";

// A running Baton as its operator meets it: the metrics it serves (while a read is stuck too), and
// its agents file reloaded (SIGHUP) between tasks and during a run. One suite per former test file.

describe("metrics", async () => {
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
      sampleSum(samples, "baton_tool_call_seconds_count", {
        tool: "adjust_stock",
        outcome: "done",
      }),
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
});

describe("metrics-stuck-read", async () => {
  // The approvals gauges are read from Postgres at each scrape. A read that never ended (a lock held
  // on approvals by a migration or a long transaction, a database gone silent) held every scrape:
  // Prometheus got nothing, not even the error counters, when the operator needed them most.

  let h: Harness;
  before(async () => {
    h = await startHarness({ script: scriptByAgent({ "customer-service": [{ content: "ok." }] }) });
  });
  after(async () => {
    await h.close();
  });

  test("/metrics answers with the last values while the approvals gauges' read is stuck", async () => {
    const metrics = `http://127.0.0.1:${h.baton.port}/metrics`;
    assert.match(await (await fetch(metrics)).text(), /^baton_approvals_waiting 0$/m);
    const locker = new pg.Client({ connectionString: h.db.url });
    await locker.connect();
    try {
      await locker.query("begin");
      await locker.query("lock table approvals in access exclusive mode");
      // Prometheus's default scrape timeout is 10 s; Baton's patience with the read is 2 s.
      const answer = await fetch(metrics, { signal: AbortSignal.timeout(8_000) });
      assert.equal(answer.status, 200);
      assert.match(await answer.text(), /^baton_approvals_waiting 0$/m);
    } finally {
      await locker.query("rollback").catch(() => {});
      await locker.end();
    }
  });
});

describe("agents-reload", async () => {
  // An operator edits the agents file and sends SIGHUP (reloadAgents): the new instructions apply
  // from the next turn, without a restart. A file with mistakes is refused; the one in use stays.

  const ORIGINAL = await readFile(new URL("../../agents.yml", import.meta.url), "utf8");
  const NEW_WORDS = "Always sign your answers as Team Lamp.";

  let dir: string;
  let file: string;
  let h: Harness;
  const logged: Record<string, unknown>[] = [];
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "baton-reload-"));
    file = path.join(dir, "agents.yml");
    await writeFile(file, ORIGINAL);
    h = await startHarness({
      script: scriptByAgent({
        "customer-service": [{ content: "first" }, { content: "second" }, { content: "third" }],
      }),
      agentsFile: await loadAgentsFile(file, demoTools),
      agentsPath: file,
      log: createLogger({
        level: "warn",
        destination: { write: (line: string) => void logged.push(JSON.parse(line)) },
      }),
    });
  });
  after(async () => {
    await h.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Asks in a new thread; returns the system message Customer Service was given. */
  async function systemMessageOfNextTask(): Promise<string> {
    const before = h.model.requests.length;
    const { ts } = await h.mention("where is order 1042?");
    await h.until("the answer", () => finishedTask(h.db.db, ts));
    const request = h.model.requests[before];
    assert.ok(request, "the model was asked");
    const { messages } = request.body as { messages: { role: string; content: string }[] };
    return messages.find((m) => m.role === "system")?.content ?? "";
  }

  test("a reloaded agents file applies from the next task; a broken one is refused and the old stays", async () => {
    assert.doesNotMatch(await systemMessageOfNextTask(), /Team Lamp/);

    await writeFile(
      file,
      ORIGINAL.replace("    instructions: |\n", `    instructions: |\n      ${NEW_WORDS}\n`),
    );
    assert.equal(await h.baton.reloadAgents(), true);
    assert.match(await systemMessageOfNextTask(), /Team Lamp/);

    await writeFile(file, ORIGINAL.replace('icon: ":speech_balloon:"', "icon: wave"));
    assert.equal(await h.baton.reloadAgents(), false);
    assert.match(await systemMessageOfNextTask(), /Team Lamp/, "the file in use stays");
    // The operator's mistake is logged by its lines, without a stack to read past.
    const refused = logged.find((line) => /not reloaded/.test(String(line.msg)));
    assert.match(
      String(refused?.reason),
      /agents\.yml:\d+:\d+ agents\[0\]\.icon: use ":emoji_name:"/,
    );
    assert.equal(refused?.err, undefined);
  });
});

describe("agents-reload-mid-run", async () => {
  // After SIGHUP the agents, tools and policies apply from each task's next turn, a run under way too.
  // Here the reload happens while turn 1's model call is under way; turn 2 of the same run should
  // see the new file: the new instructions, and lookup_order no longer in Customer Service's tools.

  const ORIGINAL = await readFile(new URL("../../agents.yml", import.meta.url), "utf8");
  const NEW_WORDS = "Always sign your answers as Team Lamp.";
  const EDITED = ORIGINAL.replace(
    "    instructions: |\n",
    `    instructions: |\n      ${NEW_WORDS}\n`,
  ).replace("tools: [lookup_order, check_return_eligibility]", "tools: [check_return_eligibility]");

  let dir: string;
  let file: string;
  let h: Harness;
  let reloaded: boolean | undefined;
  let second: ChatRequest | undefined;
  before(async () => {
    assert.notEqual(EDITED, ORIGINAL);
    dir = await mkdtemp(path.join(tmpdir(), "baton-reload-mid-"));
    file = path.join(dir, "agents.yml");
    await writeFile(file, ORIGINAL);
    h = await startHarness({
      script: scriptByAgent({
        "customer-service": [
          async () => {
            // The operator edits the file and sends SIGHUP while the model answers turn 1.
            await writeFile(file, EDITED);
            reloaded = await h.baton.reloadAgents();
            return { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1042" } }] };
          },
          (request) => {
            second = request;
            // The reloaded file took lookup_order away from Customer Service: this call is outside its role.
            return { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1077" } }] };
          },
          { content: "done" },
        ],
      }),
      agentsFile: await loadAgentsFile(file, demoTools),
      agentsPath: file,
    });
  });
  after(async () => {
    await h.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("a reload during a run applies from that task's next turn", async () => {
    const { ts } = await h.mention("where is order 1042?");
    await h.until("the answer", () => finishedTask(h.db.db, ts));
    assert.equal(reloaded, true);
    assert.ok(second, "turn 2 asked the model");
    const system = second.messages.find((m) => m.role === "system");
    const toolNames = (second.tools as { function: { name: string } }[]).map(
      (t) => t.function.name,
    );
    const calls = await h.db.db
      .selectFrom("tool_calls")
      .select(["tool", "status", "args", "result"])
      .orderBy("id")
      .execute();
    const problems: string[] = [];
    if (!/Team Lamp/.test(String(system?.content)))
      problems.push("turn 2 has the old instructions");
    if (toolNames.includes("lookup_order")) problems.push("turn 2 was offered lookup_order");
    const after = calls.find((c) => (c.args as { order_id?: string }).order_id === "1077");
    if (after?.status === "done")
      problems.push(`lookup_order ran after the reload removed it: ${JSON.stringify(after)}`);
    assert.deepEqual(problems, []);
  });
});
