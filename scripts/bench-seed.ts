import { performance } from "node:perf_hooks";
import type pg from "pg";

/**
 * The data `npm run bench` measures the digest and audit queries on, seeded in SQL with
 * generate_series: per task 10 audit events and 2 model calls, a lookup_order tool call for each
 * task that names an order, and an approval for every 50th task.
 */
export const EVENTS_PER_TASK = 10;
export const MODEL_CALLS_PER_TASK = 2;

/**
 * Task i's fields come from hashes of i, so other tables find a task's id and times again without
 * a join: id md5(i)::uuid, last activity `activity_ago(i)` before now. Per 1000 tasks: 20 open and
 * stale (idle 1 to 60 days), 5 open and fresh, 50 failed, the rest answered (within 60 days).
 * 30% name an order in their facts, two tasks per order (tasks i and i + 10).
 */
const HELPERS = `
  create function pg_temp.h(i bigint) returns bigint language sql immutable
    as $$ select abs(hashint8(i)::bigint) $$;
  create function pg_temp.bucket(i bigint) returns bigint language sql immutable
    as $$ select pg_temp.h(i) % 1000 $$;
  create function pg_temp.activity_ago(i bigint) returns interval language sql immutable
    as $$ select case
      when pg_temp.bucket(i) < 20 then interval '1 day' + make_interval(secs => pg_temp.h(i + 7) % (59 * 86400))
      when pg_temp.bucket(i) < 25 then make_interval(secs => pg_temp.h(i + 7) % 43200)
      else make_interval(secs => pg_temp.h(i + 7) % (60 * 86400)) end $$;
  create function pg_temp.status(i bigint) returns text language sql immutable
    as $$ select case when pg_temp.bucket(i) < 10 then 'active'
      when pg_temp.bucket(i) < 20 then 'waiting_human' when pg_temp.bucket(i) < 25 then 'active'
      when pg_temp.bucket(i) < 75 then 'failed' else 'done' end $$;
  create function pg_temp.task_id(i bigint) returns uuid language sql immutable
    as $$ select md5(i::text)::uuid $$;
  create function pg_temp.order_id(i bigint) returns text language sql immutable
    as $$ select case when i % 10 < 3 then (100000 + (i / 20) * 3 + i % 10)::text end $$;
`;

const AGENTS = "array['customer-service','fulfillment','inventory','billing']";
const agentOf = (n: string) => `(${AGENTS})[1 + ((${n}) % 4)::int]`;

const SEED_TASKS = `
  insert into tasks (id, channel_id, thread_ts, requester_id, title, request_text, status,
    owner_kind, owner_id, hop_count, step_no, stint_no, facts, tokens, cost_usd, failure_reason,
    created_at, last_activity_at, closed_at)
  select pg_temp.task_id(i), 'C0BENCH' || (i % 40), (1600000000 + i)::text || '.000100',
    'U0REQ' || (i % 5000), 'Where is order ' || coalesce(o, 'mine') || '?',
    'Hi, where is order ' || coalesce(o, 'mine') || '? It was due last week.', s,
    case when s = 'waiting_human' then 'human' else 'agent' end,
    case when s = 'waiting_human' then 'U0OWNER' || (i % 300) else ${agentOf("i")} end,
    4, 10, 5,
    case when o is not null then jsonb_build_object('order_id', o, 'sku', 'SKU-' || (i % 900))
      else jsonb_build_object('sku', 'SKU-' || (i % 900)) end,
    2800, 0.00055, case when s = 'failed' then 'the model could not be used' end,
    now() - ago - interval '20 minutes', now() - ago,
    case when s in ('done', 'failed') then now() - ago end
  from generate_series(1, $1::bigint) i,
    lateral (select pg_temp.status(i) as s, pg_temp.activity_ago(i) as ago,
      pg_temp.order_id(i) as o) x
`;

const EVENT_KINDS = [
  [
    "human",
    "message_received",
    `{"text":"Hi, where is my order? It was due last week.","ts":"1600000000.000100"}`,
  ],
  ["system", "task_started", `{"agent":"customer-service"}`],
  [
    "agent",
    "tool_call",
    `{"tool":"lookup_order","args":{"order_id":"100042"},"status":"done","allowed_by":"policy:read"}`,
  ],
  [
    "agent",
    "handoff",
    `{"kind":"transfer","to":"fulfillment","note":{"summary":"Order is stuck in fulfillment.","needed":"Ship it."}}`,
  ],
  [
    "agent",
    "tool_call",
    `{"tool":"get_fulfillment_status","args":{"order_id":"100042"},"status":"done"}`,
  ],
  [
    "agent",
    "handoff",
    `{"kind":"transfer","to":"inventory","note":{"summary":"Stock shows 0.","needed":"Recount."}}`,
  ],
  [
    "agent",
    "tool_call",
    `{"tool":"adjust_stock","args":{"sku":"SKU-42","counted_quantity":14},"status":"done"}`,
  ],
  [
    "agent",
    "handoff",
    `{"kind":"hand_back","to":"fulfillment","note":{"result":"Corrected to 14."}}`,
  ],
  ["agent", "tool_call", `{"tool":"ship_order","args":{"order_id":"100042"},"status":"done"}`],
  ["agent", "answer", `{"text":"Your order is on the way with UPS."}`],
] as const;
const quote = (text: string) => `'${text.replaceAll("'", "''")}'`;
const column = (n: 0 | 1 | 2) =>
  `(array[${EVENT_KINDS.map((k) => quote(k[n])).join(",")}])[1 + k::int]`;

/**
 * Event k of task t is row t + k * tasks: a task's history is spread over the table as it is when
 * many tasks run at once, so a lookup reads scattered pages, not one.
 */
const SEED_EVENTS = `
  insert into audit_events (task_id, at, actor_kind, actor_id, kind, data)
  select pg_temp.task_id(t), now() - pg_temp.activity_ago(t) - make_interval(mins => (20 - 2 * k)::int),
    ${column(0)}, case when k = 0 then 'U0REQ' || (t % 5000) when k = 1 then 'baton'
      else ${agentOf("t + k")} end,
    ${column(1)}, (${column(2)})::jsonb
  from generate_series($1::bigint, $2::bigint) g,
    lateral (select 1 + (g - 1) % $3 as t, (g - 1) / $3 as k) x
`;

const SEED_MODEL_CALLS = `
  insert into model_calls (task_id, step_no, agent_id, model, prompt_tokens, completion_tokens,
    cost_usd, latency_ms, request_chars, outcome, created_at)
  select pg_temp.task_id(t), 1 + k, ${agentOf("t + k")}, 'gpt-4o-mini', 1200, 40,
    0.000204, 900, 4800, 'tool', now() - pg_temp.activity_ago(t) - make_interval(mins => (19 - k)::int)
  from generate_series(1, $1::bigint * ${MODEL_CALLS_PER_TASK}) g,
    lateral (select 1 + (g - 1) % $1 as t, (g - 1) / $1 as k) x
`;

const SEED_TOOL_CALLS = `
  insert into tool_calls (task_id, step_no, agent_id, tool, tool_class, args, idempotency_key,
    status, result, allowed_by, created_at)
  select pg_temp.task_id(i), 1, 'customer-service', 'lookup_order', 'read',
    jsonb_build_object('order_id', o), md5(i::text) || ':1:0', 'done',
    '{"status":"shipped"}', 'policy:read', now() - pg_temp.activity_ago(i) - interval '19 minutes'
  from generate_series(1, $1::bigint) i, lateral (select pg_temp.order_id(i) as o) x
  where o is not null
`;

/** Every 50th task asked for an approval; one in 20 of those still waits, up to 10 days. */
const SEED_APPROVALS = `
  insert into approvals (task_id, step_no, tool_call_id, model_call_id, agent_id, tool, args,
    policy_id, requester_id, approvers, status, decided_by, decided_at, reason, expires_at,
    created_at)
  select pg_temp.task_id(i), 3, 'bench-' || i, 'call_' || i, 'billing', 'issue_refund',
    jsonb_build_object('order_id', coalesce(pg_temp.order_id(i), '1077'), 'amount_usd', 149),
    'refunds-over-100', 'U0REQ' || (i % 5000), '{"users":[],"groups":["S0BILLINGLEADS"]}',
    case when pending then 'pending' else 'approved' end,
    case when pending then null else 'U0LEE' end,
    case when pending then null else created + interval '15 minutes' end,
    null, created + interval '4 hours', created
  from generate_series(50, $1::bigint, 50) i,
    lateral (select (i / 50) % 20 = 0 as pending) p,
    lateral (select case when pending
      then now() - make_interval(secs => pg_temp.h(i + 3) % (10 * 86400))
      else now() - pg_temp.activity_ago(i) - interval '10 minutes' end as created) c
`;

/**
 * Loads a table with its secondary indexes dropped and rebuilds them after: one sort per index
 * instead of ten million random B-tree inserts. The rebuilt indexes are the migrations' own.
 */
async function withoutIndexes(
  client: pg.PoolClient,
  table: string,
  load: () => Promise<unknown>,
): Promise<void> {
  const { rows } = await client.query<{ indexname: string; indexdef: string }>(
    `select indexname, indexdef from pg_indexes i where schemaname = 'public' and tablename = $1
       and not exists (select 1 from pg_constraint c where c.conname = i.indexname)`,
    [table],
  );
  for (const row of rows) await client.query(`drop index ${row.indexname}`);
  await load();
  for (const row of rows) await client.query(row.indexdef);
}

/** Seeds `tasks` tasks and what hangs off them; returns the time of each step. */
export async function seedReportData(pool: pg.Pool, tasks: number): Promise<string> {
  const times: string[] = [];
  const step = async (name: string, run: () => Promise<unknown>) => {
    const started = performance.now();
    await run();
    times.push(`${name} ${((performance.now() - started) / 1000).toFixed(1)} s`);
  };
  const clients = await Promise.all([pool.connect(), pool.connect()]);
  try {
    for (const client of clients) {
      await client.query(
        "set synchronous_commit = off; set maintenance_work_mem = '512MB'; set work_mem = '64MB'",
      );
      await client.query(HELPERS);
    }
    const [a, b] = clients as [pg.PoolClient, pg.PoolClient];
    await step("tasks", () => withoutIndexes(a, "tasks", () => a.query(SEED_TASKS, [tasks])));
    // Two connections, one per core: the machine this runs on has two.
    const events = tasks * EVENTS_PER_TASK;
    const half = Math.floor(events / 2);
    await step("audit events", () =>
      withoutIndexes(a, "audit_events", () =>
        Promise.all([
          a.query(SEED_EVENTS, [1, half, tasks]),
          b.query(SEED_EVENTS, [half + 1, events, tasks]),
        ]),
      ),
    );
    await step("model calls, tool calls, approvals", () =>
      Promise.all([
        withoutIndexes(a, "model_calls", () => a.query(SEED_MODEL_CALLS, [tasks])),
        withoutIndexes(b, "tool_calls", async () => {
          await b.query(SEED_TOOL_CALLS, [tasks]);
          await b.query(SEED_APPROVALS, [tasks]);
        }),
      ]),
    );
    // Vacuum as well: autovacuum would otherwise set the visibility maps during the measurements.
    await step("vacuum analyze", () =>
      Promise.all([
        a.query("vacuum (analyze) tasks, approvals, model_calls, tool_calls"),
        b.query("vacuum (analyze) audit_events"),
      ]),
    );
    await step("checkpoint", () => a.query("checkpoint"));
  } finally {
    for (const client of clients) client.release();
  }
  return times.join(", ");
}
