import type { ChildProcess } from "node:child_process";
import path from "node:path";
import pg from "pg";
import {
  type ChainRequest,
  HOPS,
  mentionTs,
  report,
  type Sample,
  seedOrders,
  serverCpuMeter,
  startFakes,
} from "../../scripts/bench-chain.ts";
import { freshDatabase, playgroundServer, ROOT, SIGNING_SECRET } from "../../scripts/playground.ts";
import { loadAgentsFile } from "../../src/config/agents-file.ts";
import type { AgentsFile } from "../../src/config/agents-schema.ts";
import { type DatabaseHandle, openDatabase } from "../../src/db/database.ts";
import { migrateToLatest } from "../../src/db/migrate.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { modelCounter, type RecordedRequest } from "../../test/support/model-server.ts";

/**
 * What scripts/bench.ts does for Baton, for another framework wired into Slack by hand: the same
 * chain (flow 1, CS → F → I → F → CS, orders 5000..), the same fakes in a child process, the same
 * embedded Postgres and demo tables, measured and reported the same way.
 */
export const CHAINS = Number(process.env.BENCH_CHAINS ?? 200);
const WARMUP = 20;
const CHANNEL = "C0BENCH";
/** Chains played, warm-up included: one order (and one scripted chain) each. */
export const ORDERS = CHAINS + WARMUP;

export { SIGNING_SECRET };

/** Where the scripted model runs: in the measured process (no transport), or behind HTTP. */
export type ModelPlace = "in-process" | "http";

export interface Setup {
  slackUrl: string;
  modelUrl: string;
  model: ModelPlace;
  /** Baton's migrations applied (the demo tables among them), orders and stock seeded. */
  databaseUrl: string;
  /** The same pool and prepared statements Baton's demo tools run on. */
  database: DatabaseHandle;
  agentsFile: AgentsFile;
}

/** A framework listening for Slack events, as a developer would run it. */
export interface Contender {
  /** Where Slack's signed events go. */
  endpoint: string;
  /** Resolves once everything the chain in this thread does is done: state saved, posts sent. */
  settled(threadTs: string): Promise<void>;
  /** The requests an in-process model answered; counted here as the fakes count theirs. */
  modelRequests?: readonly RecordedRequest[];
  stop(): Promise<void>;
}

type FakesMessage = {
  answered?: string;
  wallMs?: number;
  slackCpuMs?: number;
  chars?: number;
  calls?: number;
  posts?: number;
  error?: string;
};

export async function compare(
  name: string,
  labels: Record<ModelPlace, string>,
  start: (setup: Setup) => Promise<Contender>,
): Promise<void> {
  const { fakes, ...urls } = await startFakes(
    path.join(ROOT, "bench", "compare", "fakes.ts"),
    ORDERS,
  );
  const agentsPath = path.join(ROOT, process.env.BENCH_AGENTS ?? "scripts/bench-agents.yml");
  const agentsFile = await loadAgentsFile(agentsPath, new Set(demoTools.map((t) => t.name)));
  const server = await playgroundServer();
  try {
    console.log(
      `flow 1, ${HOPS} hops per chain, ${CHAINS} chains after ${WARMUP} warm-up, agents ${path.relative(ROOT, agentsPath)} (${process.version})`,
    );
    // BENCH_MODELS=in-process (or http) runs one of the two, as in scripts/bench.ts.
    const models = (process.env.BENCH_MODELS ?? "in-process,http").split(",");
    for (const model of ["in-process", "http"] as const) {
      if (!models.includes(model)) continue;
      const databaseUrl = await freshDatabase(
        server.url,
        `baton_compare_${name}_${model.replace("-", "_")}`,
      );
      const samples = await measure(fakes, { ...urls, model, databaseUrl, agentsFile }, start);
      report(labels[model], samples, {
        name: "framework",
        process: "the framework's process only",
        commits: "write transactions",
      });
    }
  } finally {
    fakes.disconnect();
    await server.stop();
  }
}

/** One run: a fresh database seeded with the chains' orders, the contender started on it, the chains. */
async function measure(
  fakes: ChildProcess,
  setup: Omit<Setup, "database">,
  start: (setup: Setup) => Promise<Contender>,
): Promise<Sample[]> {
  const database = openDatabase(setup.databaseUrl);
  const probe = new pg.Client({ connectionString: setup.databaseUrl });
  let contender: Contender | undefined;
  try {
    await migrateToLatest(database.db);
    await seedOrders(database.db, ORDERS);
    await probe.connect();
    contender = await start({ ...setup, database });
    const c = contender;
    const { rows } = await probe.query<{ pid: number }>("select pg_backend_pid() as pid");
    const server = serverCpuMeter(Number(rows[0]?.pid));
    const counter = modelCounter(c.modelRequests ?? []);
    const play = (i: number) => chain(fakes, probe, c, { i, server, counter });
    for (let i = 0; i < WARMUP; i++) await play(i);
    const samples: Sample[] = [];
    for (let i = WARMUP; i < ORDERS; i++) samples.push(await play(i));
    return samples;
  } finally {
    await contender?.stop();
    await probe.end().catch(() => {});
    await database.close();
  }
}

/** Write transactions since the last call: each takes a transaction id; reading one takes one too. */
async function xid(probe: pg.Client): Promise<number> {
  const { rows } = await probe.query<{ xid: string }>("select pg_current_xact_id()::text as xid");
  return Number(rows[0]?.xid);
}

async function chain(
  fakes: ChildProcess,
  probe: pg.Client,
  contender: Contender,
  at: {
    i: number;
    server: (() => number) | undefined;
    counter: ReturnType<typeof modelCounter>;
  },
): Promise<Sample> {
  const { i, server } = at;
  const ts = mentionTs(i);
  const text = `<@U0BATONBOT> where is order ${5000 + i}?`;
  const xidBefore = await xid(probe);
  const serverBefore = server?.();
  const cpuBefore = process.cpuUsage();
  // Slack, in the fakes' process, sends the mention and times the chain until the answer is in.
  const played = await ask(
    fakes,
    { endpoint: contender.endpoint, secret: SIGNING_SECRET, channel: CHANNEL, ts, text },
    (m) => m.answered === ts,
  );
  const cpu = process.cpuUsage(cpuBefore);
  const { wallMs, slackCpuMs } = played;
  if (wallMs === undefined || slackCpuMs === undefined)
    throw new Error(`chain ${i}: ${played.error ?? "failed"}`);
  await contender.settled(ts);
  const serverCpuMs = server && serverBefore !== undefined ? server() - serverBefore : undefined;
  const commits = (await xid(probe)) - xidBefore - 1;
  const counted = await ask(fakes, { chars: true }, (m) => m.chars !== undefined);
  const here = at.counter();
  const error = counted.error ?? here.error;
  if (error) throw new Error(`chain ${i}: ${error}`);
  const calls = (counted.calls ?? 0) + here.calls;
  // Ten model calls, four handoff cards and the answer: the chain was played as Baton plays it.
  if (calls !== 10 || counted.posts !== 5)
    throw new Error(`chain ${i}: ${calls} model calls (not 10), ${counted.posts} posts (not 5)`);
  return {
    wallMs,
    slackCpuMs,
    ...(serverCpuMs !== undefined && { serverCpuMs }),
    cpuMs: (cpu.user + cpu.system) / 1000,
    commits,
    chars: (counted.chars ?? 0) + here.chars,
  };
}

function ask(
  fakes: ChildProcess,
  message: ChainRequest | { chars: true },
  isAnswer: (m: FakesMessage) => boolean,
): Promise<FakesMessage> {
  return new Promise((resolve) => {
    const listener = (m: FakesMessage) => {
      if (!isAnswer(m)) return;
      fakes.off("message", listener);
      resolve(m);
    };
    fakes.on("message", listener);
    fakes.send(message);
  });
}
