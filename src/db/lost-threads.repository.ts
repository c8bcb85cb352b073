import { sql } from "kysely";
import type { Executor } from "./database.ts";

/**
 * Slack's answers to a post in a conversation Baton can no longer write to, for good: archived,
 * deleted, or a private channel the app was removed from. Slack's own words, as toBatonError keeps
 * them at the end of a refused call's message.
 */
const GONE = ["is_archived", "channel_not_found", "not_in_channel"];

/** A task in progress whose thread Slack refuses, and Slack's word for why. */
export type ThreadLost = { taskId: string; slackError: string };

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
