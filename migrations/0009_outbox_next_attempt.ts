import type { Kysely } from "kysely";

/**
 * When a row that Slack failed to take may be tried again. A temporary failure (an outage, a
 * stretch of 429s) backs off instead of counting towards a cap: nothing accepted is dropped, and a
 * thread's later rows wait behind it. Null: due now (never failed, or failed before this column).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("slack_outbox").addColumn("next_attempt_at", "timestamptz").execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("slack_outbox").dropColumn("next_attempt_at").execute();
}
