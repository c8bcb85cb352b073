import { type ExpressionBuilder, type NotNull, sql } from "kysely";
import { type Executor, statement, type Tx } from "./database.ts";
import {
  type AuditInput,
  auditRows,
  type ConversationRecord,
  conversationRows,
  type HandoffRecord,
  handoffRow,
} from "./ledger.repository.ts";
import { lastStatement } from "./pipelined-client.ts";
import type { Database, TaskRow } from "./schema.ts";

export type Owner = { kind: "agent" | "human"; id: string };

export async function findTask(db: Executor, id: string): Promise<TaskRow | undefined> {
  return db.selectFrom("tasks").selectAll().where("id", "=", id).executeTakeFirst();
}

export async function findTaskByThread(
  db: Executor,
  channelId: string,
  threadTs: string,
): Promise<TaskRow | undefined> {
  return db
    .selectFrom("tasks")
    .selectAll()
    .where("channel_id", "=", channelId)
    .where("thread_ts", "=", threadTs)
    .executeTakeFirst();
}

export interface NewTask {
  channelId: string;
  threadTs: string;
  requesterId: string;
  title: string;
  requestText: string;
  owner: Owner;
}

function newTaskRow(task: NewTask) {
  return {
    channel_id: task.channelId,
    thread_ts: task.threadTs,
    requester_id: task.requesterId,
    title: task.title,
    request_text: task.requestText,
    owner_kind: task.owner.kind,
    owner_id: task.owner.id,
    handback_stack: JSON.stringify([]),
    facts: JSON.stringify({}),
    cost_usd: 0,
  };
}

export async function insertTask(tx: Tx, task: NewTask): Promise<TaskRow> {
  return tx.insertInto("tasks").values(newTaskRow(task)).returningAll().executeTakeFirstOrThrow();
}

/**
 * A new task with what it starts with (its first conversation message, its start handoff, its
 * audit events) in one statement of data-modifying CTEs. The id is the caller's, so the rows that
 * refer to the task can be written beside it. Every accept of a mention runs it, so its text is
 * constant (see `statement`): the rows travel as JSON arrays (as their mappers write them, with
 * JSON columns as text), in order, and a task without a lease gets nulls for it.
 */
const START_TASK = `
with task_row as (
  insert into tasks (channel_id, thread_ts, requester_id, title, request_text, owner_kind, owner_id,
    handback_stack, facts, cost_usd, id, lease_owner, lease_until)
  values ($1, $2, $3, $4, $5, $6, $7, '[]', '{}', 0, $8, $9::text, now() + $10::interval)
  returning *
), conversation_rows as (
  insert into conversation (task_id, stint_no, step_no, message)
  select r.task_id, r.stint_no, r.step_no, r.message::jsonb
  from rows from (json_to_recordset($11::json) as (task_id uuid, stint_no int, step_no int,
      message text))
    with ordinality as r(task_id, stint_no, step_no, message, n)
  order by r.n
), handoff_row as (
  insert into handoffs (task_id, step_no, kind, from_kind, from_id, to_kind, to_id, note)
  select r.task_id, r.step_no, r.kind, r.from_kind, r.from_id, r.to_kind, r.to_id, r.note::jsonb
  from json_to_record($12::json) as r(task_id uuid, step_no int, kind text, from_kind text,
    from_id text, to_kind text, to_id text, note text)
), audit_rows as (
  insert into audit_events (task_id, actor_kind, actor_id, kind, data)
  select r.task_id, r.actor_kind, r.actor_id, r.kind, r.data::jsonb
  from rows from (json_to_recordset($13::json) as (task_id uuid, actor_kind text, actor_id text,
      kind text, data text))
    with ordinality as r(task_id, actor_kind, actor_id, kind, data, n)
  order by r.n
)
select * from task_row`;

type StartTaskParams = [
  channelId: string,
  threadTs: string,
  requesterId: string,
  title: string,
  requestText: string,
  ownerKind: string,
  ownerId: string,
  id: string,
  leaseOwner: string | null,
  leaseFor: string | null,
  conversation: string,
  handoff: string,
  audits: string,
];
const startTaskStatement = statement<StartTaskParams, TaskRow>(START_TASK);
/** The same, sent with its transaction's COMMIT (see `lastStatement`). */
const startTaskLast = statement<StartTaskParams, TaskRow>(lastStatement(START_TASK));

export async function startTask(
  tx: Tx,
  start: {
    id: string;
    task: NewTask;
    /** Leased to this worker from the start, when it runs the task itself right after the commit. */
    lease?: { worker: string; ms: number };
    /** The transaction's last statement, sent with its COMMIT (see `lastStatement`). */
    last?: boolean;
    conversation: readonly ConversationRecord[];
    handoff: HandoffRecord;
    audits: readonly AuditInput[];
  },
): Promise<TaskRow> {
  const { task, lease } = start;
  const row = await (start.last ? startTaskLast : startTaskStatement).first(
    tx,
    task.channelId,
    task.threadTs,
    task.requesterId,
    task.title,
    task.requestText,
    task.owner.kind,
    task.owner.id,
    start.id,
    lease?.worker ?? null,
    lease ? `${lease.ms} milliseconds` : null,
    JSON.stringify(conversationRows(start.conversation)),
    JSON.stringify(handoffRow(start.handoff)),
    JSON.stringify(auditRows(start.audits)),
  );
  if (!row) throw new Error("the new task was not written");
  return row;
}

const LOCK_TASK_FOR_TURN = statement<
  [worker: string, leaseFor: string, id: string, expectedStep: number],
  Pick<TaskRow, "status" | "owner_kind" | "tokens" | "cost_usd">
>(`
update tasks set lease_owner = $1, lease_until = now() + $2::interval
where id = $3 and step_no = $4
  -- As the turn's own statement: not while another run holds the task.
  and (lease_owner = $1 or lease_until is null or lease_until < now())
returning status, owner_kind, tokens, cost_usd`);

/**
 * Locks the task for one turn's commit and extends this worker's lease, in one statement. Returns
 * nothing when another worker committed a step since `expectedStep` was read, or holds the task
 * now (its lease ran out under this one, which took it over): the caller drops its turn.
 */
export async function lockTaskForTurn(
  tx: Tx,
  id: string,
  expectedStep: number,
  worker: string,
  leaseMs: number,
) {
  return LOCK_TASK_FOR_TURN.first(tx, worker, `${leaseMs} milliseconds`, id, expectedStep);
}

/**
 * Locks the task for a run that holds its lease, and extends the lease; nothing when another run
 * holds it now.
 */
export async function lockHeldTask(
  tx: Tx,
  id: string,
  worker: string,
  leaseMs: number,
): Promise<TaskRow | undefined> {
  return tx
    .updateTable("tasks")
    .set({ lease_until: sql<Date>`clock_timestamp() + ${`${leaseMs} milliseconds`}::interval` })
    .where("id", "=", id)
    .where("lease_owner", "=", worker)
    .returningAll()
    .executeTakeFirst();
}

export async function lockTask(tx: Tx, id: string): Promise<TaskRow | undefined> {
  return tx.selectFrom("tasks").selectAll().where("id", "=", id).forUpdate().executeTakeFirst();
}

export interface TaskChanges {
  status?: "active" | "waiting_human" | "done" | "failed";
  owner?: Owner;
  stepNo?: number;
  newStint?: boolean;
  /** One more handoff between agents counted against the hop limit. */
  hop?: boolean;
  /** A person spoke or decided: the hop limit counts afresh from here. */
  hopsAfresh?: boolean;
  handbackStack?: string[];
  facts?: Record<string, unknown>;
  addTokens?: number;
  addCostUsd?: number;
  failureReason?: string | null;
  modelErrors?: number;
  urgency?: string;
}

export interface UpdateTaskOptions {
  /**
   * The run whose work this change ends by taking the task out of the agent's hands outside a
   * turn (a halt). Should its worker die before letting the task go, the claim that takes it over
   * records no lost try (see CLAIM_LEASE); not said of another run that holds the task now.
   */
  finishedRun?: string;
}

export async function updateTask(
  tx: Tx,
  id: string,
  changes: TaskChanges,
  { finishedRun }: UpdateTaskOptions = {},
): Promise<void> {
  let update = tx.updateTable("tasks").set(taskChangesSet(changes));
  if (finishedRun !== undefined)
    update = update.set({
      lease_finished: sql<boolean>`lease_finished or lease_owner is not distinct from ${finishedRun}`,
    });
  await update.where("id", "=", id).execute();
}

/** Closes the task as done; returns when, by the database's clock. */
export async function markTaskDone(tx: Tx, id: string): Promise<Date> {
  const row = await tx
    .updateTable("tasks")
    .set(taskChangesSet({ status: "done" }))
    .where("id", "=", id)
    .returning("closed_at")
    .$narrowType<{ closed_at: NotNull }>()
    .executeTakeFirstOrThrow();
  return row.closed_at;
}

/** The SET clause of a task update: counters are added in SQL, so concurrent turns never lose one. */
export function taskChangesSet(changes: TaskChanges) {
  const closing = changes.status === "done" || changes.status === "failed";
  return (eb: ExpressionBuilder<Database, "tasks">) => ({
    last_activity_at: sql<Date>`now()`,
    ...(changes.status && { status: changes.status, closed_at: closing ? sql<Date>`now()` : null }),
    ...(changes.owner && { owner_kind: changes.owner.kind, owner_id: changes.owner.id }),
    ...(changes.stepNo !== undefined && { step_no: changes.stepNo }),
    ...(changes.newStint && { stint_no: eb("stint_no", "+", 1) }),
    ...(changes.hop && { hop_count: eb("hop_count", "+", 1) }),
    ...(changes.hopsAfresh && { hop_count: 0 }),
    ...(changes.handbackStack && { handback_stack: JSON.stringify(changes.handbackStack) }),
    ...(changes.facts && { facts: JSON.stringify(changes.facts) }),
    ...(changes.addTokens && { tokens: eb("tokens", "+", changes.addTokens) }),
    ...(changes.addCostUsd && { cost_usd: sql<string>`cost_usd + ${changes.addCostUsd}` }),
    ...(changes.failureReason !== undefined && { failure_reason: changes.failureReason }),
    ...(changes.modelErrors !== undefined && { model_errors: changes.modelErrors }),
    ...(changes.urgency && { urgency: changes.urgency }),
  });
}
