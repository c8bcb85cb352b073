import { type Kysely, sql } from "kysely";

/**
 * The per-day cost cap reads an agent's spend today before every model call: a range scan of
 * (agent_id, created_at) that carries cost_usd, so it never touches the table (index-only scan).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index model_calls_agent_day_idx on model_calls (agent_id, created_at) include (cost_usd)`.execute(
    db,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex("model_calls_agent_day_idx").ifExists().execute();
}
