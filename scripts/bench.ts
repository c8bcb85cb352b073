import path from "node:path";
import { sql } from "kysely";
import { type Baton, startBaton } from "../src/app.ts";
import { loadAgentsFile } from "../src/config/agents-file.ts";
import { loadConfig } from "../src/config/env.ts";
import { demoTools } from "../src/domain/demo-tools.ts";
import { createLogger } from "../src/log.ts";
import { freePort } from "../test/support/harness.ts";
import { scriptByAgent } from "../test/support/model-server.ts";
import { scriptedModel } from "../test/support/scripted-model.ts";
import { whereIsMyOrderScript } from "../test/support/scripts.ts";
import { settledTask } from "../test/support/scripts-humans.ts";
import {
  type ChainRequest,
  HOPS,
  mentionTs,
  type Played,
  report,
  type Sample,
  seedOrders,
  serverCpuMeter,
  startFakes,
} from "./bench-chain.ts";
import {
  exitOnSetting,
  freshDatabase,
  playgroundServer,
  ROOT,
  SIGNING_SECRET,
  tellSetting,
  withDatabase,
} from "./playground.ts";

/**
 * `npm run bench`: flow 1's five-hop chain (CS → F → I → F → CS), many times, with a scripted model
 * that answers at once, twice: the model in-process (Baton's own cost per hop) and the model behind
 * an OpenAI-compatible server reached by the real openai client. The Slack emulator (and the model
 * server) run in a child process, so this process is Baton alone. Reports per hop the wall time,
 * Baton's CPU time and the database commits, and per chain the characters sent to the model.
 */
const CHAINS = Number(process.env.BENCH_CHAINS ?? 200);
// Enough chains for V8 to compile the hot path: the figures are a running service's, not a cold start's.
const WARMUP = 20;
const CHANNEL = "C0BENCH";
const ORDERS = CHAINS + WARMUP;
// BENCH_AT_SCALE=baton_bench_reports plays the chains on the reports bench's million tasks (kept by
// `BENCH_KEEP=1 node scripts/bench-reports.ts`; once per seeding, as the chains' orders stay shipped).
const AT_SCALE = process.env.BENCH_AT_SCALE;

// First: a port or DATABASE_URL to fix ends the bench before anything else starts.
const server = await playgroundServer().catch(exitOnSetting("bench"));
const { fakes, ...urls } = await startFakes(path.join(ROOT, "scripts", "bench-fakes.ts"), ORDERS);
// BENCH_AGENTS=agents.yml measures with the default agents' full instructions instead.
const agentsPath = path.join(ROOT, process.env.BENCH_AGENTS ?? "scripts/bench-agents.yml");
const agentsFile = await loadAgentsFile(agentsPath, demoTools);

async function startBench(
  model: "in-process" | "http",
): Promise<{ baton: Baton; endpoint: string }> {
  const port = await freePort();
  const script: Record<string, Parameters<typeof scriptByAgent>[0][string]> = {};
  for (let i = 0; i < ORDERS; i++) {
    for (const [agent, replies] of Object.entries(
      whereIsMyOrderScript({ orderId: String(5000 + i), sku: `BENCH-${i}` }),
    )) {
      script[agent] = [...(script[agent] ?? []), ...replies];
    }
  }
  const baton = await startBaton({
    config: loadConfig({
      SLACK_BOT_TOKEN: "xoxb-test",
      SLACK_SIGNING_SECRET: SIGNING_SECRET,
      SLACK_API_URL: urls.slackUrl,
      OPENAI_API_KEY: "sk-bench-not-a-real-key",
      OPENAI_BASE_URL: urls.modelUrl,
      DATABASE_URL: AT_SCALE
        ? withDatabase(server.url, AT_SCALE)
        : await freshDatabase(server.url, `baton_bench_${model.replace("-", "_")}`),
      PORT: String(port),
      BATON_WORKERS: "1",
    }),
    agentsFile,
    log: createLogger({ level: "silent" }),
    maintenance: false,
    ...(model === "in-process" && { model: scriptedModel(scriptByAgent(script)) }),
  });
  await seedOrders(baton.deps.db, ORDERS);
  return { baton, endpoint: `http://127.0.0.1:${port}/slack/events` };
}

/** Write transactions since the last call: each takes a transaction id; reading one takes one too. */
async function xid(baton: Baton): Promise<number> {
  const row = await sql<{ xid: string }>`select pg_current_xact_id()::text as xid`.execute(
    baton.deps.db,
  );
  return Number(row.rows[0]?.xid);
}

/** The database server's CPU so far, when it runs here (the bench's own few reads included). */
async function serverCpu(baton: Baton): Promise<(() => number) | undefined> {
  const row = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(baton.deps.db);
  return serverCpuMeter(Number(row.rows[0]?.pid));
}

async function chain(
  baton: Baton,
  endpoint: string,
  i: number,
  server: (() => number) | undefined,
): Promise<Sample> {
  const ts = mentionTs(i);
  const text = `<@U0BATONBOT> where is order ${5000 + i}?`;
  const xidBefore = await xid(baton);
  const serverBefore = server?.();
  const answered = played({ endpoint, secret: SIGNING_SECRET, channel: CHANNEL, ts, text });
  // From after the bench's message to the fakes' process, whose write (about 0.6 ms of this
  // process's CPU on this VM, by a CPU profile) is the bench's, not Baton's.
  const cpuBefore = process.cpuUsage();
  const slack = await answered;
  const cpu = process.cpuUsage(cpuBefore);
  // Its last outbox row is marked sent just after Slack answered: wait for that commit too.
  const taskId = await settled(baton, ts);
  const serverCpuMs = server && serverBefore !== undefined ? server() - serverBefore : undefined;
  const commits = (await xid(baton)) - xidBefore - 1;
  const calls = await baton.deps.db
    .selectFrom("model_calls")
    .select((eb) => eb.fn.sum<number>("request_chars").as("chars"))
    .where("task_id", "=", taskId)
    .executeTakeFirstOrThrow();
  return {
    ...slack,
    cpuMs: (cpu.user + cpu.system) / 1000,
    commits,
    chars: Number(calls.chars),
    ...(serverCpuMs !== undefined && { serverCpuMs }),
  };
}

async function settled(baton: Baton, threadTs: string): Promise<string> {
  for (;;) {
    const task = await settledTask(baton.deps.db, threadTs, "done");
    if (task) return task.id;
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Slack, in the fakes' process, sends the mention and times the chain until the answer is in the
 * thread: the event's HTTP client is Slack's, not Baton's, and this process does not poll.
 */
function played(chain: ChainRequest): Promise<Played> {
  return new Promise((resolve, reject) => {
    const listener = (message: Partial<Played> & { answered?: string; error?: string }) => {
      if (message.answered !== chain.ts) return;
      fakes.off("message", listener);
      const { wallMs, slackCpuMs } = message;
      if (wallMs === undefined || slackCpuMs === undefined)
        reject(new Error(message.error ?? "the chain failed"));
      else resolve({ wallMs, slackCpuMs });
    };
    fakes.on("message", listener);
    fakes.send(chain);
  });
}

try {
  console.log(
    `flow 1, ${HOPS} hops per chain, ${CHAINS} chains after ${WARMUP} warm-up, agents ${path.relative(ROOT, agentsPath)} (${process.version})`,
  );
  // BENCH_MODELS=in-process (or http) runs one of the two.
  const models = (process.env.BENCH_MODELS ?? "in-process,http").split(",");
  if (AT_SCALE && models.length > 1)
    throw new Error("BENCH_AT_SCALE plays one run: set BENCH_MODELS=in-process (or http)");
  for (const model of ["in-process", "http"] as const) {
    if (!models.includes(model)) continue;
    const { baton, endpoint } = await startBench(model);
    try {
      const server = await serverCpu(baton);
      for (let i = 0; i < WARMUP; i++) await chain(baton, endpoint, i, server);
      const samples: Sample[] = [];
      for (let i = WARMUP; i < ORDERS; i++) samples.push(await chain(baton, endpoint, i, server));
      report(
        model === "in-process"
          ? "scripted model in-process (Baton's own cost)"
          : "scripted model over HTTP, through the real openai client",
        samples,
        {
          name: "Baton",
          process: "Baton's process only",
          commits: "write transactions, pg-boss included",
        },
      );
    } finally {
      await baton.stop();
    }
  }
} catch (error) {
  // DATABASE_URL's server refusing the bench's database, say: told, and the bench stops its parts.
  tellSetting("bench", error);
} finally {
  fakes.disconnect();
  await server.stop();
}
