import { type Kysely, sql } from "kysely";

/**
 * Indexes behind the audit lookups, the daily digest and App Home, so each stays an index range
 * scan with a million tasks. Partial where the query only ever reads a small slice.
 */
export async function up(db: Kysely<any>): Promise<void> {
  // The digest's dead-letter section: failed tasks, newest failure first.
  await sql`create index tasks_failed_closed_idx on tasks (closed_at) where status = 'failed'`.execute(
    db,
  );
  // App Home: open tasks someone asked for.
  await sql`create index tasks_requester_open_idx on tasks (requester_id, last_activity_at) where status in ('active', 'waiting_human')`.execute(
    db,
  );
  // `/baton audit 1077`: an order id found in a task's facts or in a tool call's arguments.
  await sql`create index tasks_order_id_idx on tasks ((facts ->> 'order_id')) where facts ->> 'order_id' is not null`.execute(
    db,
  );
  await sql`create index tool_calls_order_id_idx on tool_calls ((args ->> 'order_id')) where args ->> 'order_id' is not null`.execute(
    db,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const name of [
    "tool_calls_order_id_idx",
    "tasks_order_id_idx",
    "tasks_requester_open_idx",
    "tasks_failed_closed_idx",
  ]) {
    await db.schema.dropIndex(name).ifExists().execute();
  }
}
