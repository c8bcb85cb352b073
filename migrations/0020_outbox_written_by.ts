import { type Kysely, sql } from "kysely";

/**
 * Which process wrote an outbox row: its database session's application_name, which Baton sets to
 * an id of its own per process. A row another process wrote may be in Slack already (its writer
 * may have died while Slack took it), so its deliverer looks in Slack before sending it. Rows
 * written before this column have none, and are looked for.
 */
export async function up(db: Kysely<any>): Promise<void> {
  // Added first, then given its default: a default given with the column would stamp every
  // earlier row with the name of the process that migrates.
  await db.schema.alterTable("slack_outbox").addColumn("written_by", "text").execute();
  await sql`alter table slack_outbox alter column written_by set default current_setting('application_name')`.execute(
    db,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("slack_outbox").dropColumn("written_by").execute();
}
