import { type RawBuilder, sql } from "kysely";
import type { Executor } from "./database.ts";

/**
 * Slack's answers to a post in a conversation Baton can no longer write to, for good: archived,
 * deleted, or a private channel the app was removed from. Slack's own words, as toBatonError keeps
 * them at the end of a refused call's message.
 */
const GONE = ["is_archived", "channel_not_found", "not_in_channel"];

/** A task in progress whose thread Slack refuses, and Slack's word for why. */
type ThreadLost = { taskId: string; slackError: string };

/**
 * Open tasks whose last word to their own channel Slack refused for good (a dead row, nothing sent
 * there after it): nobody in the thread sees what the task says or asks. Read from the open tasks'
 * index, then each one's rows not sent (slack_outbox_task_pending_idx).
 */
export async function tasksWithLostThread(db: Executor, limit: number): Promise<ThreadLost[]> {
  const rows = await sql<{ task_id: string; slack_error: string }>`
    select distinct on (t.id) t.id as task_id, substring(o.error from ': ([a-z_]+)$') as slack_error
    from tasks t
    join slack_outbox o on o.task_id = t.id and o.status = 'dead'
      and o.payload -> 'intent' ->> 'channel' = t.channel_id
    where t.status in ('active', 'waiting_human')
      and substring(o.error from ': ([a-z_]+)$') = any(${GONE})
      and not exists (
        select 1 from slack_outbox s
        where s.task_id = t.id and s.status = 'sent' and s.id > o.id
          and s.payload -> 'intent' ->> 'channel' = t.channel_id)
    order by t.id, o.id desc
    limit ${limit}`.execute(db);
  return rows.rows.map((r) => ({ taskId: r.task_id, slackError: r.slack_error }));
}

/** A done task whose answer Slack refused for good: `refusedRow` is the answer's last row. */
export type AnswerLost = { taskId: string; slackError: string; refusedRow: string };

/**
 * What the audit trail calls an answer Slack took by DM, and one whose DM Slack refused too
 * (recorded as the DM's outbox row is marked, see DeliveryAudit); `refused_row` says which answer.
 * Before they were recorded so, `answer_sent_by_dm` was written as the DM was queued.
 */
export const ANSWER_SENT_BY_DM = "answer_sent_by_dm";
export const ANSWER_DM_REFUSED = "answer_dm_refused";

/**
 * Whether a DM of the task carries the answer whose last row is `refusedRow`, or a later answer:
 * queued, sent or refused (a sweep sends no second one), or sent before DMs carried their answer's
 * row (its event was written as it was queued).
 */
const dmCarries = (taskId: RawBuilder<unknown>, refusedRow: RawBuilder<unknown>) => sql<boolean>`(
  exists (
    select 1 from slack_outbox d
    where d.task_id = ${taskId} and d.id > ${refusedRow} and d.method = 'direct_message'
      and (d.payload -> 'audited' -> 'data' ->> 'refused_row')::bigint >= ${refusedRow})
  or exists (
    select 1 from audit_events a
    where a.task_id = ${taskId} and a.kind = ${ANSWER_SENT_BY_DM}
      and (a.data ->> 'refused_row')::bigint >= ${refusedRow}))`;

/**
 * Done tasks whose answer (their last word to their own channel) Slack refused for good in the
 * last day, and that no DM carries yet. An older one is left: an archive months on must not
 * send people answers to work long past. Read from the rows not sent (slack_outbox_pending_idx).
 */
export async function answersLost(db: Executor, limit: number): Promise<AnswerLost[]> {
  const rows = await sql<{ task_id: string; slack_error: string; refused_row: string }>`
    select distinct on (t.id) t.id as task_id, o.id as refused_row,
      substring(o.error from ': ([a-z_]+)$') as slack_error
    from slack_outbox o
    join tasks t on t.id = o.task_id and t.status = 'done'
    where o.status = 'dead' and o.created_at > now() - interval '1 day'
      and o.payload -> 'intent' ->> 'kind' = 'agent_reply'
      and o.payload -> 'intent' ->> 'channel' = t.channel_id
      and substring(o.error from ': ([a-z_]+)$') = any(${GONE})
      and not exists (
        select 1 from slack_outbox s
        where s.task_id = t.id and s.status = 'sent' and s.id > o.id
          and s.payload -> 'intent' ->> 'channel' = t.channel_id)
      and not ${dmCarries(sql`t.id`, sql`o.id`)}
    order by t.id, o.id desc
    limit ${limit}`.execute(db);
  return rows.rows.map((r) => ({
    taskId: r.task_id,
    slackError: r.slack_error,
    refusedRow: String(r.refused_row),
  }));
}

/** Whether a DM carries the answer `refusedRow` ends, or a later one. Read under the task's lock. */
export async function answerDmQueued(db: Executor, lost: AnswerLost): Promise<boolean> {
  const carried = dmCarries(sql`${lost.taskId}::uuid`, sql`${lost.refusedRow}::bigint`);
  const found = await sql<{ queued: boolean }>`select ${carried} as queued`.execute(db);
  return found.rows[0]?.queued === true;
}

/** The task's last answer, whole (the thread's rows hold it in parts). */
export async function lastAnswer(db: Executor, taskId: string): Promise<string | undefined> {
  const row = await db
    .selectFrom("audit_events")
    .select("data")
    .where("task_id", "=", taskId)
    .where("kind", "=", "answer")
    .orderBy("id", "desc")
    .executeTakeFirst();
  const text = row?.data.text;
  return typeof text === "string" ? text : undefined;
}
