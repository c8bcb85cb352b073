import { sql } from "kysely";
import { type Db, type Executor, statement, type Tx } from "./database.ts";
import {
  type Delivered,
  type DeliveredValues,
  deliveredValues,
  markDeliveredSql,
} from "./outbox-marks.repository.ts";
import type { TaskRow } from "./schema.ts";
import {
  type LoadedTurn,
  TURN_READS,
  type TurnReadsRow,
  toLoadedTurn,
} from "./turn-reads.repository.ts";

/** The lease: which worker drives a task now, taken and given up in one statement each. */

export interface Claim {
  /** Outbox rows an earlier run left undelivered. */
  undelivered: boolean;
  /** Decided approvals whose parked calls are not settled yet. */
  decided: boolean;
  /** What the first turn reads, as of the claim. */
  turn: LoadedTurn;
}

/**
 * What the audit says of a try whose run stopped holding its task without giving it up: its worker
 * died or stopped answering (pg-boss would expire its job only after 15 minutes, and a run started
 * at the accept has no active job to expire), and a claim took the task over once its lease ran out.
 * Not said of a run that had finished its work (`lease_finished`): nothing of it was lost.
 */
export const LOST_TRY =
  "the worker running it stopped before finishing, and its lease ran out; another run took the task over";

// The lease as it was is read locked, so a run giving the task up meanwhile is waited for and seen;
// a live lease of another run's is not read at all, so a claim never waits on a live run's write.
// A lease left by another run that ran out is a lost try, recorded by the one claim that takes it
// over; not when that run's failure, which could not give the lease up, already named it, nor when
// that run had finished its work (it answered, halted the task, or left it to a person, and died
// before letting go): its answer stands, and a reply or a decision since is new work, not its own.
const CLAIM_LEASE = statement<
  [worker: string, leaseFor: string, id: string, lostTry: string],
  { id: string }
>(`
with was as (
  select id, lease_owner, lease_finished from tasks
  where id = $3 and (lease_until is null or lease_until < now() or lease_owner = $1)
  for no key update
), claimed as (
  update tasks set lease_owner = $1, lease_until = now() + $2::interval, lease_finished = false
  from was
  where tasks.id = was.id
    and (tasks.lease_until is null or tasks.lease_until < now() or tasks.lease_owner = $1)
  returning tasks.id, was.lease_owner as left_by, was.lease_finished as left_finished
), lost as (
  insert into audit_events (task_id, actor_kind, actor_id, kind, data)
  select id, 'system', 'baton', 'attempt_failed',
    jsonb_build_object('error', $4::text, 'retried', true, 'run', left_by)
  from claimed
  where left_by <> $1 and not left_finished
    and not exists (select from audit_events
      where audit_events.task_id = claimed.id and audit_events.kind = 'attempt_failed'
        and audit_events.data ->> 'run' = claimed.left_by)
)
select id from claimed`);

// Outbox rows not yet sent, and what a turn reads.
const CLAIMED_READS = statement<[id: string], TurnReadsRow & { undelivered: boolean }>(`
select tasks.*,
  exists (select from slack_outbox
    where slack_outbox.task_id = tasks.id
      and slack_outbox.status <> 'sent' and slack_outbox.status <> 'dead') as undelivered,
  ${TURN_READS}
from tasks where tasks.id = $1`);

/**
 * Claims the right to drive a task for `leaseMs`. A worker that died leaves a lease that runs out,
 * so its task is taken over, and its lost try audited (`LOST_TRY`) in the claim's own statement,
 * unless its run had finished its work first; a live worker's lease keeps duplicate jobs from
 * running turns twice.
 * Then reads what the run starts from: undelivered messages, decisions to settle, and the first
 * turn's task and conversation, in one snapshot, so a decision and the task status it set are
 * seen together. Not in the claim's own statement: a claim that waited on the task's row (a
 * decision being committed) is checked against the row as committed, but anything else it read
 * would be as of before, a decision's status without its approval.
 */
export async function claimLease(
  db: Executor,
  id: string,
  worker: string,
  leaseMs: number,
): Promise<Claim | undefined> {
  if (!(await CLAIM_LEASE.first(db, worker, `${leaseMs} milliseconds`, id, LOST_TRY)))
    return undefined;
  const row = await CLAIMED_READS.first(db, id);
  if (!row) return undefined;
  const { undelivered, ...turn } = row;
  const loaded = toLoadedTurn(turn);
  return { undelivered, decided: loaded.decided, turn: loaded };
}

// Only while the run holds the task: one that took it over has its own say.
const RESUME_WORK = statement<[id: string, worker: string], never>(`
update tasks set lease_finished = false
where id = $1 and lease_owner = $2 and lease_finished`);

/**
 * The run whose last turn finished its work (`lease_finished`) works on: a reply or a decision gave
 * the task back to the agent while that turn was written. A worker that dies from here on has lost
 * a try (see CLAIM_LEASE). Its own statement, committed before the work goes on: a reset inside a
 * transaction of that work would roll back with it when the worker dies.
 */
export async function resumeWork(db: Db, id: string, worker: string): Promise<void> {
  await RESUME_WORK.rows(db, id, worker);
}

// A task locked by a transaction (the run's own write tool, most often) is not waited for: that
// transaction's turn extends the lease as it commits, and until then the lock keeps others out.
const RENEW_LEASE = statement<[leaseFor: string, id: string, worker: string], { held: boolean }>(`
with unlocked as (
  select id from tasks where id = $2 and lease_owner = $3 for no key update skip locked
), renewed as (
  update tasks set lease_until = clock_timestamp() + $1::interval
  from unlocked where tasks.id = unlocked.id
  returning tasks.id
)
-- The CTE's update runs whether or not it is read; the snapshot, from before it, says who holds.
select exists (select from tasks where id = $2 and lease_owner = $3) as held`);

/**
 * Keeps a held lease from running out for another `leaseMs`; false when this worker no longer holds
 * it (it ran out and another run took the task over).
 */
export async function renewLease(
  db: Executor,
  id: string,
  worker: string,
  leaseMs: number,
): Promise<boolean> {
  return (await RENEW_LEASE.first(db, `${leaseMs} milliseconds`, id, worker))?.held === true;
}

// One text whether or not there are rows to mark; a data-modifying CTE runs to completion even
// when the lease was no longer this worker's (the rows were delivered anyway). A reopening is
// audited in the same statement, named after the first unread reply's author; only when it ran.
const RELEASE_LEASE = statement<
  [...DeliveredValues, id: string, worker: string],
  Pick<TaskRow, "status" | "owner_kind">
>(`
with delivered_rows as (${markDeliveredSql("$1", "$2")}),
released as (
  update tasks set lease_owner = null, lease_until = null, lease_finished = false,
    status = case when unread.reopen then 'active' else tasks.status end,
    closed_at = case when unread.reopen then null else tasks.closed_at end,
    model_errors = case when unread.reopen then 0 else tasks.model_errors end,
    failure_reason = case when unread.reopen then null else tasks.failure_reason end,
    hop_count = case when unread.reopen then 0 else tasks.hop_count end
  from (
    select tasks.status as was, first_reply.author_id as author,
      tasks.status in ('done', 'failed') and tasks.owner_kind = 'agent'
        and first_reply.author_id is not null as reopen
    from tasks left join lateral (
      select author_id from task_inputs
      where task_inputs.task_id = tasks.id and task_inputs.consumed_at_step is null
      order by task_inputs.id limit 1
    ) as first_reply on true
    -- Read under the row's lock, as it is now: a reply's accept that reopened the task while this
    -- waited has reopened (and audited) it already.
    where tasks.id = $3
    for no key update of tasks
  ) as unread
  where tasks.id = $3 and tasks.lease_owner = $4
  returning tasks.id, tasks.status, tasks.owner_kind, tasks.owner_id, unread.reopen, unread.was,
    unread.author
), reopened as (
  insert into audit_events (task_id, actor_kind, actor_id, kind, data)
  select id, 'human', author, 'task_reopened',
    jsonb_build_object('owner', owner_id, 'owner_kind', owner_kind, 'was', was)
  from released where reopen
)
select status, owner_kind from released`);

/**
 * Gives the task up; returns what it is now, so the worker can tell whether it has work left.
 * `delivered` outbox rows are marked sent in the same statement. A task the run ended (answered or
 * failed) while the requester replied is opened again, and audited, as a reply to a closed task
 * opens it: the reply found the task still running, and no turn was left to read it.
 */
export async function releaseLease(
  db: Executor,
  id: string,
  worker: string,
  delivered: readonly Delivered[] = [],
) {
  return RELEASE_LEASE.first(db, ...deliveredValues(delivered), id, worker);
}

/** Whether a run holds the task's lease now, by the database's clock. */
export async function leaseHeld(db: Executor, id: string): Promise<boolean> {
  const row = await db
    .selectFrom("tasks")
    .select(sql<boolean>`coalesce(lease_until > now(), false)`.as("held"))
    .where("id", "=", id)
    .executeTakeFirst();
  return row?.held === true;
}

/** A task, and whether a run holds its lease now. */
export type LeasedTask = TaskRow & { leased: boolean };

/**
 * The task, and whether a run holds its lease now by the database's clock, in one read. A
 * replica's own clock may be off: a dead run's lease would look live to a slow one, a live run's
 * lease run out to a fast one.
 */
export async function taskWithLease(db: Executor, id: string): Promise<LeasedTask | undefined> {
  return leasedTaskQuery(db, id).executeTakeFirst();
}

/** As `taskWithLease`, locked for update until the transaction ends. */
export async function lockTaskWithLease(tx: Tx, id: string): Promise<LeasedTask | undefined> {
  return leasedTaskQuery(tx, id).forUpdate().executeTakeFirst();
}

function leasedTaskQuery(db: Executor, id: string) {
  return db
    .selectFrom("tasks")
    .selectAll()
    .select(sql<boolean>`coalesce(lease_until > now(), false)`.as("leased"))
    .where("id", "=", id);
}

/** Tasks an agent should be working on but no live worker drives (after a crash or restart). */
export async function findOrphanedTasks(db: Executor, limit: number): Promise<string[]> {
  const rows = await db
    .selectFrom("tasks")
    .select("id")
    .where("status", "=", "active")
    .where("owner_kind", "=", "agent")
    .where((eb) => eb.or([eb("lease_until", "is", null), eb("lease_until", "<", sql<Date>`now()`)]))
    .orderBy("last_activity_at")
    .limit(limit)
    // A task whose row is locked is being driven: a write tool's transaction, longer than the
    // lease, extends it as it commits. A job queued for it would only wait on the lock.
    .forShare()
    .skipLocked()
    .execute();
  const ids = rows.map((r) => r.id);
  if (ids.length >= limit) return ids;
  return [...new Set([...ids, ...(await endedWithUnreadReply(db, limit - ids.length))])];
}

/**
 * Locks a task the sweep found orphaned, if no run has claimed it since; not one whose row is
 * locked (a run's write tool, or another replica's sweep, which queues its job).
 */
export async function lockOrphanedTask(tx: Tx, id: string): Promise<boolean> {
  const row = await tx
    .selectFrom("tasks")
    .select("id")
    .where("id", "=", id)
    .where((eb) => eb.or([eb("lease_until", "is", null), eb("lease_until", "<", sql<Date>`now()`)]))
    .forNoKeyUpdate()
    .skipLocked()
    .executeTakeFirst();
  return row !== undefined;
}

/**
 * Tasks a run ended (answered or failed) and died before giving up: its release would have opened
 * the task again for a reply that came while it ran (whose own job found the task held, and ended).
 * Only a run that died leaves an ended task's lease set: found by the index of those (migration
 * 0016), not by reading every task ever answered, nor every reply in threads people hold.
 */
export function endedWithUnreadReplyQuery(db: Executor, limit: number) {
  return db
    .selectFrom("task_inputs")
    .innerJoin("tasks", "tasks.id", "task_inputs.task_id")
    .select("tasks.id")
    .distinct() // the limit counts tasks, not replies
    .where("task_inputs.consumed_at_step", "is", null)
    .where("tasks.status", "in", ["done", "failed"])
    .where("tasks.owner_kind", "=", "agent")
    .where("tasks.lease_until", "<", sql<Date>`now()`)
    .limit(limit);
}

async function endedWithUnreadReply(db: Executor, limit: number): Promise<string[]> {
  const rows = await endedWithUnreadReplyQuery(db, limit).execute();
  return rows.map((r) => r.id);
}

/** The task as a turn starts from it, its current stint's conversation and unread replies. */
