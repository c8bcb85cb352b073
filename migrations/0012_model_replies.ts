import type { Kysely } from "kysely";

/**
 * A model's reply kept before a turn calls a tool outside Baton's database (an HTTP tool that
 * writes): should the turn fail after the endpoint acted, its retry replays this reply instead of
 * asking the model again, so the call goes out again with the same arguments under the same key.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("model_replies")
    .addColumn("task_id", "uuid", (c) => c.notNull().references("tasks.id"))
    .addColumn("stint_no", "integer", (c) => c.notNull())
    .addColumn("step_no", "integer", (c) => c.notNull())
    .addColumn("reply", "jsonb", (c) => c.notNull())
    /** The replies of people the model had read: the turn consumes these, and no later ones. */
    .addColumn("input_ids", "jsonb", (c) => c.notNull())
    .addColumn("latency_ms", "integer", (c) => c.notNull())
    .addPrimaryKeyConstraint("model_replies_pkey", ["task_id", "stint_no", "step_no"])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("model_replies").execute();
}
