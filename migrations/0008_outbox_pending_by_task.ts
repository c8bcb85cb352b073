import { type Kysely, sql } from "kysely";

/**
 * A task's unsent posts, found by task: claiming a lease, delivering a task's rows and a card's
 * updates all ask for them. Without it they read every task's pending rows, which a Slack outage
 * turns into thousands at each claim. Rows leave the index once sent.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index slack_outbox_task_pending_idx on slack_outbox (task_id) where status <> 'sent'`.execute(
    db,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex("slack_outbox_task_pending_idx").ifExists().execute();
}
