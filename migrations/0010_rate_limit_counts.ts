import { type Kysely, sql } from "kysely";

/**
 * Rate limits (`policies.rate_limits`) count from the ledger: a tool's runs in the last window,
 * and the tasks one person started in it. Each count reads one index range.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index tool_calls_tool_created_idx on tool_calls (tool, created_at) where status in ('done', 'pending_approval')`.execute(
    db,
  );
  await sql`create index tasks_requester_created_idx on tasks (requester_id, created_at)`.execute(
    db,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex("tool_calls_tool_created_idx").execute();
  await db.schema.dropIndex("tasks_requester_created_idx").execute();
}
