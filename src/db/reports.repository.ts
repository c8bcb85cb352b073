import { sql } from "kysely";
import type { Executor } from "./database.ts";

/** Read-only queries behind `/baton audit`, the daily digest and App Home. */

export type TaskRef =
  | { kind: "task"; id: string }
  | { kind: "order"; orderId: string }
  | { kind: "thread"; channel: string; threadTs: string };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ORDER_ID = /^#?([A-Za-z0-9][A-Za-z0-9_-]{0,63})$/;
const CHANNEL = /^[CGD][A-Z0-9]{2,}$/;
const TS = /^\d{10}\.\d{6}$/;
// Permalinks drop the ts's dot: p1700000000000100 is 1700000000.000100.
const PERMALINK_PATH = /\/archives\/([CGD][A-Z0-9]{2,})\/p(\d{10})(\d{6})\b/;
// The web app's address bar with a thread open: /client/T…/C…/thread/C…-1700000000.000100 beside
// its channel, or beside the Threads or Activity view (/client/T…/threads/thread/C…-…).
const CLIENT_THREAD_PATH =
  /\/client\/[A-Z0-9]+\/(?:[\w-]+\/)*thread\/([CGD][A-Z0-9]{2,})-(\d{10}\.\d{6})\/?$/;

/** What the operator typed: a task uuid, an order id, or a Slack thread link. */
export function parseTaskRef(input: string): TaskRef | undefined {
  // Slack wraps links in slash-command text as <url> or <url|label>. A pasted reference may carry
  // invisible format characters (zero-width spaces, direction marks) that no reference holds.
  const ref = input
    .replace(/\p{Cf}/gu, "")
    .trim()
    .replace(/^<([^|>]*)(?:\|[^>]*)?>$/, "$1");
  if (UUID.test(ref)) return { kind: "task", id: ref.toLowerCase() };
  if (/^https?:\/\//i.test(ref)) return parseThreadLink(ref);
  const order = ORDER_ID.exec(ref);
  return order?.[1] ? { kind: "order", orderId: order[1] } : undefined;
}

function parseThreadLink(link: string): TaskRef | undefined {
  if (!URL.canParse(link)) return undefined;
  const url = new URL(link);
  const open = CLIENT_THREAD_PATH.exec(url.pathname);
  if (open?.[1] && open[2]) return { kind: "thread", channel: open[1], threadTs: open[2] };
  const path = PERMALINK_PATH.exec(url.pathname);
  const channel = url.searchParams.get("cid") ?? url.searchParams.get("channel") ?? path?.[1];
  const ts =
    url.searchParams.get("thread_ts") ??
    url.searchParams.get("message_ts") ??
    (path ? `${path[2]}.${path[3]}` : undefined);
  if (!channel || !ts || !CHANNEL.test(channel) || !TS.test(ts)) return undefined;
  return { kind: "thread", channel, threadTs: ts };
}

export interface ResolvedRef {
  ref: TaskRef;
  /** Newest first; empty when nothing matches. */
  taskIds: string[];
}

const ORDER_TASKS_MAX = 20;

export async function resolveTaskRef(
  db: Executor,
  input: string,
): Promise<ResolvedRef | undefined> {
  const ref = parseTaskRef(input);
  if (!ref) return undefined;
  let query = db.selectFrom("tasks").select("id").orderBy("created_at", "desc");
  if (ref.kind === "task") query = query.where("id", "=", ref.id);
  if (ref.kind === "thread")
    // The task's own thread, or its escalation card's (a direct message's task: the card is where
    // the person holding it works, and the link they can copy).
    query = query.where("id", "in", (eb) =>
      eb
        .selectFrom("tasks")
        .select("id")
        .where("channel_id", "=", ref.channel)
        .where("thread_ts", "=", ref.threadTs)
        .unionAll(
          eb
            .selectFrom("escalations")
            .select("task_id as id")
            .where("card_channel", "=", ref.channel)
            .where("card_ts", "=", ref.threadTs),
        ),
    );
  if (ref.kind === "order") {
    // A union, not an OR: each side is a scan of its own expression index (migration 0004).
    query = query
      .where("id", "in", (eb) =>
        eb
          .selectFrom("tasks")
          .select("id")
          .where(sql`facts ->> 'order_id'`, "=", ref.orderId)
          .unionAll(
            eb
              .selectFrom("tool_calls")
              .select("task_id as id")
              .where(sql`args ->> 'order_id'`, "=", ref.orderId),
          ),
      )
      .limit(ORDER_TASKS_MAX);
  }
  const rows = await query.execute();
  return { ref, taskIds: rows.map((r) => r.id) };
}

/** One step of a task's history, from the audit trail or the model-call ledger. */
export interface AuditRecord {
  at: Date;
  taskId: string;
  actorKind: string;
  actorId: string;
  kind: string;
  data: Record<string, unknown>;
}

/**
 * The tasks' history in order. A turn's model call and the events it caused commit in one
 * transaction and so share `now()`: at equal times the model call comes first, then insert order.
 */
export async function auditTrail(db: Executor, taskIds: readonly string[]): Promise<AuditRecord[]> {
  if (taskIds.length === 0) return [];
  const events = db
    .selectFrom("audit_events")
    .select(["at", "task_id as taskId", "actor_kind as actorKind", "actor_id as actorId", "kind"])
    .select(["data", sql<number>`1`.as("rank"), "id"])
    .where("task_id", "in", taskIds);
  const calls = db
    .selectFrom("model_calls")
    .select(["created_at as at", "task_id as taskId", sql<string>`'agent'`.as("actorKind")])
    .select(["agent_id as actorId", sql<string>`'model_call'`.as("kind")])
    .select([
      sql<Record<string, unknown>>`jsonb_build_object('step_no', step_no, 'model', model,
        'prompt_tokens', prompt_tokens, 'completion_tokens', completion_tokens,
        'cost_usd', cost_usd, 'latency_ms', latency_ms, 'outcome', outcome,
        'usage_estimated', usage_estimated)`.as("data"),
      sql<number>`0`.as("rank"),
      "id",
    ])
    .where("task_id", "in", taskIds);
  const rows = await events.unionAll(calls).execute();
  rows.sort(
    (a, b) => a.at.getTime() - b.at.getTime() || a.rank - b.rank || Number(a.id) - Number(b.id),
  );
  return rows.map(({ at, taskId, actorKind, actorId, kind, data }) => ({
    at,
    taskId: taskId ?? "",
    actorKind,
    actorId,
    kind,
    data,
  }));
}

/** "Who processed this refund?": the tool calls of a ref's tasks, with who allowed each one. */
export async function whoProcessed(db: Executor, input: string, tool?: string) {
  const resolved = await resolveTaskRef(db, input);
  if (!resolved) return undefined;
  return { resolved, calls: await toolCallsOf(db, resolved.taskIds, tool) };
}

/** The tasks' calls of `tool`, or of every write and irreversible tool, oldest first. */
export async function toolCallsOf(db: Executor, taskIds: readonly string[], tool?: string) {
  if (taskIds.length === 0) return [];
  const query = db
    .selectFrom("tool_calls as tc")
    .leftJoin("approvals as a", "a.tool_call_id", "tc.idempotency_key")
    .select(["tc.task_id as taskId", "tc.tool", "tc.tool_class as toolClass", "tc.status"])
    .select(["tc.agent_id as agentId", "tc.args", "tc.allowed_by as allowedBy"])
    .select(["a.id as approvalId", "a.decided_by as approver", "a.decided_at as decidedAt"])
    .select("a.status as decision")
    .select(["a.reason", "tc.created_at as at"])
    .where("tc.task_id", "in", taskIds)
    .orderBy("tc.id");
  return (
    tool
      ? query.where("tc.tool", "=", tool)
      : query.where("tc.tool_class", "in", ["write", "irreversible"])
  ).execute();
}

export type ProcessedCall = Awaited<ReturnType<typeof toolCallsOf>>[number];

// ---- The daily digest ------------------------------------------------------------------------

export const OPEN = ["active", "waiting_human"];

/**
 * The database's time now (in a transaction, when it began): the digest judges what is stale by
 * the clock that stamped the rows, which every replica shares, not by its own.
 */
export async function databaseNow(db: Executor): Promise<Date> {
  const row = await db.selectNoFrom(sql<Date>`now()`.as("now")).executeTakeFirstOrThrow();
  return row.now;
}

/** Open tasks idle since before `olderThan`, oldest first: a range scan of tasks_open_activity_idx. */
export function staleTasksQuery(db: Executor, olderThan: Date, limit: number) {
  return db
    .selectFrom("tasks")
    .select(["id", "title", "channel_id", "thread_ts", "status", "owner_kind", "owner_id"])
    .select("last_activity_at")
    .where("status", "in", OPEN)
    .where("last_activity_at", "<", olderThan)
    .orderBy("last_activity_at")
    .limit(limit);
}

export const staleTasks = (db: Executor, olderThan: Date, limit: number) =>
  staleTasksQuery(db, olderThan, limit).execute();

/** Approvals pending since before `olderThan`, oldest first: approvals_pending_created_idx. */
export function staleApprovalsQuery(db: Executor, olderThan: Date, limit: number) {
  return db
    .selectFrom("approvals as a")
    .innerJoin("tasks as t", "t.id", "a.task_id")
    .select(["a.id", "a.task_id", "a.tool", "a.agent_id", "a.approvers", "a.created_at"])
    .select(["a.card_channel", "a.card_ts", "t.title", "t.channel_id", "t.thread_ts"])
    .where("a.status", "=", "pending")
    .where("a.created_at", "<", olderThan)
    .orderBy("a.created_at")
    .limit(limit);
}

export const staleApprovals = (db: Executor, olderThan: Date, limit: number) =>
  staleApprovalsQuery(db, olderThan, limit).execute();

/** The dead-letter queue: tasks failed since `since`, newest first (tasks_failed_closed_idx). */
export function failedTasksQuery(db: Executor, since: Date, limit: number) {
  return db
    .selectFrom("tasks")
    .select(["id", "title", "channel_id", "thread_ts", "owner_kind", "owner_id"])
    .select(["failure_reason", "closed_at"])
    .where("status", "=", "failed")
    .where("closed_at", ">=", since)
    .orderBy("closed_at", "desc")
    .limit(limit);
}

export const failedTasks = (db: Executor, since: Date, limit: number) =>
  failedTasksQuery(db, since, limit).execute();

/**
 * Claims one firing of a scheduled job. Inside a transaction, a second claimer of the same firing
 * waits on the primary key until the first commits, then finds the row and gets `false`.
 */
export async function claimScheduledRun(
  db: Executor,
  job: string,
  fireAt: Date,
  by: string,
): Promise<boolean> {
  const row = await db
    .insertInto("scheduled_runs")
    .values({ job, fire_at: fireAt, claimed_by: by })
    .onConflict((oc) => oc.doNothing())
    .returning("job")
    .executeTakeFirst();
  return row !== undefined;
}

export async function finishScheduledRun(db: Executor, job: string, fireAt: Date): Promise<void> {
  await db
    .updateTable("scheduled_runs")
    .set({ finished_at: sql`now()` })
    .where("job", "=", job)
    .where("fire_at", "=", fireAt)
    .execute();
}

/**
 * When the firing before this one read its lists (its claim's transaction time), so each digest
 * reports the failures since the last one read: a firing run hours late read them up to then.
 */
export async function previousRunAt(
  db: Executor,
  job: string,
  before: Date,
): Promise<Date | undefined> {
  const row = await db
    .selectFrom("scheduled_runs")
    .select("claimed_at")
    .where("job", "=", job)
    .where("fire_at", "<", before)
    .orderBy("fire_at", "desc")
    .limit(1)
    .executeTakeFirst();
  return row?.claimed_at;
}
