import { type ChildProcess, fork } from "node:child_process";
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import type { Db } from "../src/db/database.ts";
import type { AgentReply } from "../test/support/model-server.ts";
import { whereIsMyOrderScript } from "../test/support/scripts.ts";
import type { SlackEmulator } from "../test/support/slack-emulator.ts";
import { appMentionEvent, deliverEvent } from "../test/support/slack-signing.ts";

// What Baton's bench and the comparison's share: the chain, how Slack plays and times it, the report.

/** Flow 1's five hops: CS → Fulfillment → Inventory → Fulfillment → CS. */
export const HOPS = 5;

/** Flow 1's replies for orders 5000.. (one chain each), merged per agent for one model server. */
export function flowReplies(chains: number): Record<string, AgentReply[]> {
  const merged: Record<string, AgentReply[]> = {};
  for (let i = 0; i < chains; i++) {
    const script = whereIsMyOrderScript({ orderId: String(5000 + i), sku: `BENCH-${i}` });
    for (const [agent, replies] of Object.entries(script))
      merged[agent] = [...(merged[agent] ?? []), ...replies];
  }
  return merged;
}

/** Starts a fakes process (Slack and the model server) and waits for its URLs. */
export async function startFakes(
  script: string,
  orders: number,
): Promise<{ fakes: ChildProcess; slackUrl: string; modelUrl: string }> {
  const fakes = fork(script, [String(orders)], { stdio: "inherit" });
  const urls = await new Promise<{ slackUrl: string; modelUrl: string }>((resolve) =>
    fakes.once("message", resolve as never),
  );
  return { fakes, ...urls };
}

/** An order stuck on a wrong stock count for each chain: order 5000 + i, item BENCH-i. */
export async function seedOrders(db: Db, count: number): Promise<void> {
  const range = Array.from({ length: count }, (_, i) => i);
  await db
    .insertInto("inventory")
    .values(
      range.map((i) => ({
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
      range.map((i) => ({
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
}

/** A chain to play: Slack sends the mention to the app and waits for the answer in its thread. */
export interface ChainRequest {
  endpoint: string;
  secret: string;
  channel: string;
  ts: string;
  text: string;
}

/** What Slack's process reports of a chain: its wall time and the CPU Slack (and the model) spent. */
export interface Played {
  wallMs: number;
  slackCpuMs: number;
}

/**
 * Slack's view of a chain, timed in Slack's process (the benches' fakes): from sending the signed
 * mention to Customer Service's answer reaching the Web API. The event's HTTP client is Slack's,
 * so the measured process pays only for receiving it.
 */
/**
 * A mention's ts as Slack gives it, written now: a mention that comes late reads its thread first
 * (see src/slack/listeners/events.ts). Chain `i`'s microseconds keep a run's threads apart.
 */
export function mentionTs(i: number): string {
  return `${Math.floor(Date.now() / 1000)}.${String(i).padStart(6, "0")}`;
}

export async function playChain(slack: SlackEmulator, chain: ChainRequest): Promise<Played> {
  const answer = slack.waitForCall(
    "chat.postMessage",
    (c) =>
      c.args.thread_ts === chain.ts &&
      c.args.username === "Customer Service" &&
      String(c.args.text).includes("on the way"),
    30_000,
  );
  answer.catch(() => {});
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  const event = appMentionEvent({
    user: "U0BENCH",
    channel: chain.channel,
    text: chain.text,
    ts: chain.ts,
  });
  const delivery = await deliverEvent(chain.endpoint, chain.secret, event, {});
  if (delivery.status !== 200) throw new Error(`the event was answered ${delivery.status}`);
  await answer;
  const wallMs = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  return { wallMs, slackCpuMs: (cpu.user + cpu.system) / 1000 };
}

/**
 * The CPU time (ms) of the database server's processes so far, read from Linux's /proc, given the
 * pid of one of its backends; undefined when the server is not a process on this machine. With
 * the measured process's CPU and Slack's, it shows the whole machine's work per hop: on two cores a
 * hop cannot take less than half of it.
 */
export function serverCpuMeter(backendPid: number): (() => number) | undefined {
  const parentOf = (pid: number) => {
    const stat = readProc(`/proc/${pid}/stat`);
    // "pid (comm) state ppid ...": the command may hold spaces and parentheses.
    return stat ? Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) : undefined;
  };
  const isPostgres = (pid: number) => readProc(`/proc/${pid}/comm`)?.trim() === "postgres";
  const postmaster = parentOf(backendPid);
  if (!postmaster || !isPostgres(backendPid) || !isPostgres(postmaster)) return undefined;
  const children = `/proc/${postmaster}/task/${postmaster}/children`;
  if (readProc(children) === undefined) return undefined;
  // schedstat's first field: nanoseconds on a CPU.
  const onCpu = (pid: number) => Number(readProc(`/proc/${pid}/schedstat`)?.split(" ")[0] ?? 0);
  // Each process's last reading is kept, so one gone since (a closed connection) still counts what
  // it spent and the sum never falls; a reading lower than the last is a new process on a reused pid.
  const lastSeen = new Map<number, number>();
  let gone = 0;
  return () => {
    const pids = [postmaster, ...(readProc(children) ?? "").split(" ").filter(Boolean).map(Number)];
    for (const pid of pids) {
      const ns = onCpu(pid);
      const last = lastSeen.get(pid) ?? 0;
      if (ns < last) gone += last;
      lastSeen.set(pid, ns);
    }
    let ns = gone;
    for (const spent of lastSeen.values()) ns += spent;
    return ns / 1e6;
  };
}

function readProc(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
}

/** One chain as measured: Slack's wall time, the measured process's CPU, commits and model characters. */
export interface Sample {
  wallMs: number;
  cpuMs: number;
  commits: number;
  chars: number;
  /** The CPU of Slack's process (Web API emulator, event sender, model server) during the chain. */
  slackCpuMs: number;
  /** The CPU of the database server's processes, when it runs on this machine. */
  serverCpuMs?: number;
}

/** Medians and p95s per hop (characters per chain), in one format for every contender. */
export function report(
  label: string,
  samples: Sample[],
  notes: { name: string; process: string; commits: string },
): void {
  const sorted = (values: number[]) => [...values].sort((a, b) => a - b);
  const median = (values: number[]) => sorted(values)[Math.floor(values.length / 2)] ?? 0;
  const p95 = (values: number[]) => sorted(values)[Math.floor(values.length * 0.95)] ?? 0;
  const per = (pick: (s: Sample) => number) => samples.map((s) => pick(s) / HOPS);
  const [wall, cpu, commits] = [per((s) => s.wallMs), per((s) => s.cpuMs), per((s) => s.commits)];
  const chars = samples.map((s) => s.chars);
  console.log(`\n${label}`);
  console.log(
    `  wall time per hop     median ${median(wall).toFixed(2)} ms   p95 ${p95(wall).toFixed(2)} ms   (event sent → answer in Slack)`,
  );
  console.log(
    `  CPU time per hop      median ${median(cpu).toFixed(2)} ms   p95 ${p95(cpu).toFixed(2)} ms   (${notes.process})`,
  );
  console.log(
    `  commits per hop       median ${median(commits).toFixed(1)}        max ${Math.max(...commits).toFixed(1)}   (${notes.commits})`,
  );
  console.log(`  model chars per chain median ${median(chars)}       max ${Math.max(...chars)}`);
  const server = samples.map((s) => s.serverCpuMs);
  if (server.every((ms) => ms !== undefined)) {
    const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length / HOPS;
    const parts = {
      measured: mean(samples.map((s) => s.cpuMs)),
      postgres: mean(server),
      slack: mean(samples.map((s) => s.slackCpuMs)),
    };
    const all = parts.measured + parts.postgres + parts.slack;
    const wallMean = mean(samples.map((s) => s.wallMs));
    console.log(
      `  machine CPU per hop   mean ${all.toFixed(2)} ms = ${notes.name} ${parts.measured.toFixed(2)} + Postgres ${parts.postgres.toFixed(2)} + Slack and model ${parts.slack.toFixed(2)}`,
    );
    console.log(
      `                        on ${CORES} cores a hop cannot take less than ${(all / CORES).toFixed(2)} ms (it took ${wallMean.toFixed(2)} ms, mean)`,
    );
  }
}

const CORES = availableParallelism();
