import path from "node:path";
import { performance } from "node:perf_hooks";
import { sql } from "kysely";
import { loadAgentsFile } from "../src/config/agents-file.ts";
import { demoTools } from "../src/domain/demo-tools.ts";
import { scriptByAgent } from "../test/support/model-server.ts";
import { whereIsMyOrderScript } from "../test/support/scripts.ts";
import { appMentionEvent, deliverEvent } from "../test/support/slack-signing.ts";
import { ROOT, SIGNING_SECRET, startPlayground } from "./playground.ts";

/**
 * `npm run bench`: flow 1's five-hop chain (CS → F → I → F → CS), many times, with a scripted model
 * that answers at once and the Slack emulator, on the embedded Postgres. Reports per hop the wall
 * time, the CPU time and the database commits, and per chain the characters sent to the model.
 */
const CHAINS = Number(process.env.BENCH_CHAINS ?? 30);
const WARMUP = 3;
const HOPS = 5;
const CHANNEL = "C0BENCH";

const scripts = Array.from({ length: CHAINS + WARMUP }, (_, i) =>
  whereIsMyOrderScript({ orderId: String(5000 + i), sku: `BENCH-${i}` }),
);
const merged: Record<string, Parameters<typeof scriptByAgent>[0][string]> = {};
for (const s of scripts)
  for (const [agent, replies] of Object.entries(s))
    merged[agent] = [...(merged[agent] ?? []), ...replies];
// BENCH_AGENTS=agents.yml measures with the default agents' full instructions instead.
const agentsPath = path.join(ROOT, process.env.BENCH_AGENTS ?? "scripts/bench-agents.yml");
const agentsFile = await loadAgentsFile(agentsPath, new Set(demoTools.map((t) => t.name)));
const play = await startPlayground({
  script: scriptByAgent(merged),
  database: "baton_bench",
  workers: 1,
  agentsFile,
});
const db = play.baton.deps.db;

await db
  .insertInto("inventory")
  .values(
    scripts.map((_, i) => ({
      sku: `BENCH-${i}`,
      name: `Bench item ${i}`,
      on_hand: 0,
      physical_count: 14,
    })),
  )
  .execute();
await db
  .insertInto("orders")
  .values(
    scripts.map((_, i) => ({
      id: String(5000 + i),
      customer_name: "Bench",
      sku: `BENCH-${i}`,
      quantity: 1,
      total_usd: 10,
      status: "stuck_in_fulfillment",
      placed_at: new Date(),
    })),
  )
  .execute();

/** Write transactions since the last call: each takes a transaction id; reading one takes one too. */
async function xid(): Promise<number> {
  const row = await sql<{ xid: string }>`select pg_current_xact_id()::text as xid`.execute(db);
  return Number(row.rows[0]?.xid);
}

interface Sample {
  wallMs: number;
  cpuMs: number;
  commits: number;
  chars: number;
}

async function chain(i: number): Promise<Sample> {
  const text = `<@U0BATONBOT> where is order ${5000 + i}?`;
  const message = play.slack.addMessage({ channel: CHANNEL, user: "U0BENCH", text });
  const requestsBefore = play.model.requests.length;
  const xidBefore = await xid();
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  await deliverEvent(
    play.endpoint,
    SIGNING_SECRET,
    appMentionEvent({ user: "U0BENCH", channel: CHANNEL, text, ts: message.ts }),
    {},
  );
  await play.slack.waitForCall(
    "chat.postMessage",
    (c) =>
      c.args.thread_ts === message.ts &&
      c.args.username === "Customer Service" &&
      !c.args.blocks?.toString().includes("→"),
    20_000,
  );
  const final = await waitDone(message.ts);
  const wallMs = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  const commits = (await xid()) - xidBefore - 1;
  const chars = play.model.requests
    .slice(requestsBefore)
    .reduce((sum, r) => sum + r.promptChars, 0);
  if (!final) throw new Error("chain did not finish");
  return { wallMs, cpuMs: (cpu.user + cpu.system) / 1000, commits, chars };
}

async function waitDone(threadTs: string): Promise<boolean> {
  for (let i = 0; i < 2_000; i++) {
    const task = await db
      .selectFrom("tasks")
      .select("status")
      .where("thread_ts", "=", threadTs)
      .executeTakeFirst();
    if (task?.status === "done") {
      const pending = await db
        .selectFrom("slack_outbox")
        .select("id")
        .where("status", "<>", "sent")
        .executeTakeFirst();
      if (!pending) return true;
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  return false;
}

try {
  for (let i = 0; i < WARMUP; i++) await chain(i);
  const samples: Sample[] = [];
  for (let i = WARMUP; i < WARMUP + CHAINS; i++) samples.push(await chain(i));
  const median = (values: number[]) =>
    [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
  const p95 = (values: number[]) =>
    [...values].sort((a, b) => a - b)[Math.floor(values.length * 0.95)] ?? 0;
  const wall = samples.map((s) => s.wallMs / HOPS);
  const cpu = samples.map((s) => s.cpuMs / HOPS);
  const commits = samples.map((s) => s.commits / HOPS);
  const chars = samples.map((s) => s.chars);
  console.log(
    `flow 1, ${HOPS} hops per chain, ${CHAINS} chains after ${WARMUP} warm-up, agents ${path.relative(ROOT, agentsPath)} (${process.version})`,
  );
  console.log(
    `wall time per hop     median ${median(wall).toFixed(2)} ms   p95 ${p95(wall).toFixed(2)} ms`,
  );
  console.log(
    `CPU time per hop      median ${median(cpu).toFixed(2)} ms   p95 ${p95(cpu).toFixed(2)} ms   (whole process: Baton, emulator, scripted model)`,
  );
  console.log(
    `commits per hop       median ${median(commits).toFixed(1)}        max ${Math.max(...commits).toFixed(1)}   (write transactions, pg-boss included)`,
  );
  console.log(`model chars per chain median ${median(chars)}       max ${Math.max(...chars)}`);
} finally {
  await play.close();
}
