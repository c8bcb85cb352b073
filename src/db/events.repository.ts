import { CompiledQuery } from "kysely";
import type { Executor, Tx } from "./database.ts";
import type { TaskRow } from "./schema.ts";

export interface Received {
  /** The task of the message's thread, if it has one. */
  task: TaskRow | undefined;
  /** False when any key was seen before: a redelivery or a twin event (the caller rolls back). */
  fresh: boolean;
}

// The thread's task and the keys' insert in one round trip; rows only for a thread that is a task
// (or the thread of a card of one, posted elsewhere), or for a message that starts one.
const RECEIVE = `
with existing as (
  (select * from tasks where channel_id = $1 and thread_ts = $2)
  union all
  -- The thread of a card posted outside its task's thread (a task asked in a DM).
  (select tasks.* from escalations join tasks on tasks.id = escalations.task_id
    where escalations.card_channel = $1 and escalations.card_ts = $2
      and tasks.channel_id <> $1)
  union all
  (select tasks.* from approvals join tasks on tasks.id = approvals.task_id
    where approvals.card_channel = $1 and approvals.card_ts = $2
      and tasks.channel_id <> $1)
  limit 1
), received as (
  insert into slack_events (event_id, task_id)
  select key, coalesce((select id from existing), $3::uuid) from unnest($4::text[]) as key
  where $5::boolean or exists (select from existing)
  on conflict (event_id) do nothing
  returning event_id
)
select (select count(*) from received)::int as received_keys, existing.*
from (select) as one left join existing on true`;

/**
 * Records a received Slack message under every key it can arrive by (its event id, and the
 * channel + ts of the message, since one mention arrives both as app_mention and as message),
 * with the task of its thread, and returns that task. A message in a thread that is not a task
 * is recorded only when it `starts` one, under `newTaskId`.
 */
export async function receiveMessage(
  tx: Tx,
  message: {
    channel: string;
    threadTs: string;
    keys: readonly string[];
    newTaskId: string;
    starts: boolean;
  },
): Promise<Received> {
  const { rows } = await tx.executeQuery<TaskRow & { received_keys: number }>(
    CompiledQuery.raw(RECEIVE, [
      message.channel,
      message.threadTs,
      message.newTaskId,
      [...message.keys],
      message.starts,
    ]),
  );
  const { received_keys: receivedKeys, ...task } = rows[0] ?? { received_keys: 0 };
  return {
    task: "id" in task && task.id !== null ? (task as TaskRow) : undefined,
    fresh: receivedKeys === message.keys.length,
  };
}

/**
 * Records the keys of a message Baton refused (no task), so its twin event and Slack's retries
 * are duplicates: the person is told once. True when none was recorded before.
 */
export async function recordRefused(db: Executor, keys: readonly string[]): Promise<boolean> {
  const rows = await db
    .insertInto("slack_events")
    .values(keys.map((key) => ({ event_id: key, task_id: null })))
    .onConflict((oc) => oc.column("event_id").doNothing())
    .returning("event_id")
    .execute();
  return rows.length === keys.length;
}

/**
 * Records a key of Baton's own beside the events' (a late mention's thread read to its end, a
 * notice said once), with its task if it has one. True when it was not recorded before.
 */
export async function recordKey(
  db: Executor,
  key: string,
  taskId: string | null = null,
): Promise<boolean> {
  const rows = await db
    .insertInto("slack_events")
    .values({ event_id: key, task_id: taskId })
    .onConflict((oc) => oc.column("event_id").doNothing())
    .returning("event_id")
    .execute();
  return rows.length === 1;
}

export async function keyRecorded(db: Executor, key: string): Promise<boolean> {
  const row = await db
    .selectFrom("slack_events")
    .select("event_id")
    .where("event_id", "=", key)
    .executeTakeFirst();
  return row !== undefined;
}
