import { performance } from "node:perf_hooks";
import { type CompiledQuery, Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { agentActivity } from "../src/db/agent-activity.repository.ts";
import { migrateToLatest } from "../src/db/migrate.ts";
import {
  auditTrail,
  failedTasks,
  resolveTaskRef,
  staleApprovals,
  staleTasks,
} from "../src/db/reports.repository.ts";
import type { Database } from "../src/db/schema.ts";
import { EVENTS_PER_TASK, MODEL_CALLS_PER_TASK, seedReportData } from "./bench-seed.ts";
import {
  dropDatabase,
  exitOnSetting,
  freshDatabase,
  playgroundServer,
  withDatabase,
} from "./playground.ts";

/**
 * `npm run bench` (second part): the daily digest's queries and an audit lookup on a database of
 * 1,000,000 tasks and 10,000,000 audit events (scripts/bench-seed.ts). Prints the
 * seeding time, then per query the median and p95 of 20 runs after warm-up, the rows it returned
 * and the indexes its plan reads.
 */
const TASKS = Number(process.env.BENCH_TASKS ?? 1_000_000);
const APPROVALS = Math.round(TASKS / 50);
const RUNS = 20;
const WARMUP = 3;
const DATABASE = "baton_bench_reports";
// As the digest reads them (src/runtime/digest.ts): 200 items and one more, agents.yml's defaults.
const LIST_LIMIT = 201;
const STALE_AFTER_MS = 24 * 3_600_000;
const APPROVAL_STALE_AFTER_MS = 4 * 3_600_000;

// ---- Measuring -------------------------------------------------------------------------------

interface Measured {
  name: string;
  run: (i: number) => Promise<number>;
}

const now = () => new Date();
/** An order of tasks 20b + r and 20b + r + 10 (r < 3), as bench-seed.ts's pg_temp.order_id names it. */
const orderId = (run: number) =>
  String(100000 + ((run * 7_919 + 13) % Math.floor(TASKS / 20)) * 3 + (run % 3));

const measured: Measured[] = [
  {
    name: "digest: stale tasks",
    run: async () =>
      (await staleTasks(db, new Date(now().getTime() - STALE_AFTER_MS), LIST_LIMIT)).length,
  },
  {
    name: "digest: stale approvals",
    run: async () =>
      (await staleApprovals(db, new Date(now().getTime() - APPROVAL_STALE_AFTER_MS), LIST_LIMIT))
        .length,
  },
  {
    name: "digest: failed tasks (24 h)",
    run: async () =>
      (await failedTasks(db, new Date(now().getTime() - 86_400_000), LIST_LIMIT)).length,
  },
  {
    // As readDigest runs them: in parallel, on one transaction in the app, on the pool here.
    name: "digest: the three together",
    run: async () => {
      const at = now().getTime();
      const lists = await Promise.all([
        staleTasks(db, new Date(at - STALE_AFTER_MS), LIST_LIMIT),
        staleApprovals(db, new Date(at - APPROVAL_STALE_AFTER_MS), LIST_LIMIT),
        failedTasks(db, new Date(at - 86_400_000), LIST_LIMIT),
      ]);
      return lists.reduce((sum, list) => sum + list.length, 0);
    },
  },
  {
    name: "/baton agents: 30 days of 4 agents",
    run: async () =>
      (
        await agentActivity(
          db,
          ["customer-service", "fulfillment", "inventory", "billing"],
          30 * 86_400_000,
        )
      ).length,
  },
  {
    name: "audit: order id -> tasks -> trail",
    run: async (i) => {
      const resolved = await resolveTaskRef(db, orderId(i));
      if (!resolved || resolved.taskIds.length === 0) throw new Error(`no task for ${orderId(i)}`);
      return (await auditTrail(db, resolved.taskIds)).length;
    },
  },
];

async function report(): Promise<void> {
  const rows: string[][] = [["query", "median ms", "p95 ms", "rows", "indexes in the plan"]];
  for (const m of measured) {
    for (let i = 0; i < WARMUP; i++) await m.run(RUNS + i);
    const times: number[] = [];
    let returned = 0;
    for (let i = 0; i < RUNS; i++) {
      const started = performance.now();
      returned = await m.run(i);
      times.push(performance.now() - started);
    }
    rows.push([
      m.name,
      percentile(times, 0.5).toFixed(2),
      percentile(times, 0.95).toFixed(2),
      String(returned),
      (await indexesUsed(m)).join(", "),
    ]);
  }
  console.log(
    `median and p95 of ${RUNS} runs after ${WARMUP} warm-up, wall time through kysely and pg (${process.version})`,
  );
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => r[c]?.length ?? 0))) ?? [];
  for (const row of rows)
    console.log(
      row
        .map((cell, c) => cell.padEnd(widths[c] ?? 0))
        .join("  ")
        .trimEnd(),
    );
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
}

/** Runs the operation once more, capturing its SQL, and names the indexes each plan scans. */
async function indexesUsed(m: Measured): Promise<string[]> {
  captured.length = 0;
  capturing = true;
  try {
    await m.run(0);
  } finally {
    capturing = false;
  }
  const names = new Set<string>();
  for (const query of captured) {
    const { rows } = await pool.query<{ "QUERY PLAN": unknown }>(
      `explain (format json) ${query.sql}`,
      query.parameters as unknown[],
    );
    const visit = (node: unknown): void => {
      if (node === null || typeof node !== "object") return;
      const record = node as Record<string, unknown>;
      if (typeof record["Index Name"] === "string") names.add(record["Index Name"]);
      if (record["Node Type"] === "Seq Scan") names.add(`seq scan of ${record["Relation Name"]}`);
      for (const value of Object.values(record)) {
        if (Array.isArray(value)) value.forEach(visit);
        else visit(value);
      }
    };
    visit(rows[0]?.["QUERY PLAN"]);
  }
  return [...names];
}

// ---- Main ------------------------------------------------------------------------------------

const server = await playgroundServer().catch(exitOnSetting("bench"));
const serverUrl = server.url;
// The seeded database takes 3.4 GB: it is dropped after the run unless BENCH_KEEP=1 keeps it for
// BENCH_REUSE=1, which measures again without seeding.
const reuse = process.env.BENCH_REUSE === "1";
const keep = process.env.BENCH_KEEP === "1" || reuse;
const url = reuse
  ? withDatabase(serverUrl, DATABASE)
  : await freshDatabase(serverUrl, DATABASE).catch(async (error: unknown) => {
      await server.stop();
      return exitOnSetting("bench")(error);
    });
const pool = new pg.Pool({ connectionString: url, max: 4 });
const captured: CompiledQuery[] = [];
let capturing = false;
const db = new Kysely<Database>({
  dialect: new PostgresDialect({ pool }),
  log: (event) => {
    if (capturing && event.level === "query") captured.push(event.query);
  },
});

try {
  await migrateToLatest(db);
  if (!reuse) await seedAndSay();
  await report();
} finally {
  await db.destroy();
  if (!keep) await dropDatabase(serverUrl, DATABASE);
  await server.stop();
}

async function seedAndSay(): Promise<void> {
  const seedStarted = performance.now();
  const seedTimes = await seedReportData(pool, TASKS);
  const seedMs = performance.now() - seedStarted;
  const size = await pool.query<{ size: string }>(
    "select pg_size_pretty(pg_database_size(current_database())) as size",
  );
  console.log(
    `seeded ${TASKS.toLocaleString("en")} tasks, ${(TASKS * EVENTS_PER_TASK).toLocaleString("en")} audit events, ` +
      `${(TASKS * MODEL_CALLS_PER_TASK).toLocaleString("en")} model calls, ${(TASKS * 0.3).toLocaleString("en")} tool calls, ` +
      `${APPROVALS.toLocaleString("en")} approvals ` +
      `in ${(seedMs / 1000).toFixed(1)} s (${seedTimes}); database ${size.rows[0]?.size}`,
  );
}
