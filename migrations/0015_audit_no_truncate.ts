import { type Kysely, sql } from "kysely";

/**
 * The audit trail's trigger (0001) refuses UPDATE and DELETE; TRUNCATE skips row and statement
 * triggers of those events, so it gets its own: emptying the history is rewriting it too.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create trigger audit_events_no_truncate before truncate on audit_events
    for each statement execute function audit_events_append_only()`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop trigger audit_events_no_truncate on audit_events`.execute(db);
}
