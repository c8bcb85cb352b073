import { type Kysely, sql } from "kysely";

/**
 * `/baton agents` reads each agent's write calls and escalations of the last month: the evidence
 * for moving it from shadow to supervised to autonomous. Both are a small share of their tables.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index tool_calls_agent_writes_idx on tool_calls (agent_id, created_at) where tool_class <> 'read'`.execute(
    db,
  );
  await sql`create index handoffs_escalations_idx on handoffs (from_id, created_at) where kind = 'escalation'`.execute(
    db,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex("tool_calls_agent_writes_idx").execute();
  await db.schema.dropIndex("handoffs_escalations_idx").execute();
}
