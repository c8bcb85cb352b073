import { type Kysely, sql } from "kysely";

/** Pauses for a human (approvals, escalations) are rows, never promises in memory. */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("approvals")
    .addColumn("id", "uuid", (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn("task_id", "uuid", (c) => c.notNull().references("tasks.id"))
    .addColumn("step_no", "integer", (c) => c.notNull())
    .addColumn("tool_call_id", "text", (c) => c.notNull().unique())
    // The model's id for the call, so the decision answers it in the conversation.
    .addColumn("model_call_id", "text", (c) => c.notNull())
    .addColumn("agent_id", "text", (c) => c.notNull())
    .addColumn("tool", "text", (c) => c.notNull())
    .addColumn("args", "jsonb", (c) => c.notNull())
    .addColumn("policy_id", "text", (c) => c.notNull())
    .addColumn("requester_id", "text", (c) => c.notNull())
    .addColumn("approvers", "jsonb", (c) => c.notNull())
    .addColumn("fallback", "jsonb")
    .addColumn("status", "text", (c) => c.notNull().defaultTo("pending"))
    .addColumn("decided_by", "text")
    .addColumn("decided_at", "timestamptz")
    .addColumn("reason", "text")
    .addColumn("expires_at", "timestamptz", (c) => c.notNull())
    .addColumn("escalated_at", "timestamptz")
    .addColumn("card_channel", "text")
    .addColumn("card_ts", "text")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await sql`create index approvals_pending_idx on approvals (expires_at) where status = 'pending'`.execute(
    db,
  );
  await sql`create index approvals_pending_created_idx on approvals (created_at) where status = 'pending'`.execute(
    db,
  );
  await db.schema.createIndex("approvals_task_idx").on("approvals").column("task_id").execute();
  await db.schema
    .createIndex("approvals_decided_by_idx")
    .on("approvals")
    .columns(["decided_by", "decided_at"])
    .execute();

  await db.schema
    .createTable("escalations")
    .addColumn("id", "uuid", (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn("task_id", "uuid", (c) => c.notNull().references("tasks.id"))
    .addColumn("step_no", "integer", (c) => c.notNull())
    .addColumn("from_agent", "text", (c) => c.notNull())
    .addColumn("note", "jsonb", (c) => c.notNull())
    .addColumn("owner", "jsonb", (c) => c.notNull())
    .addColumn("fallback", "jsonb")
    .addColumn("status", "text", (c) => c.notNull().defaultTo("open"))
    .addColumn("decided_by", "text")
    .addColumn("decided_at", "timestamptz")
    .addColumn("decision", "jsonb")
    .addColumn("respond_by", "timestamptz", (c) => c.notNull())
    .addColumn("escalated_at", "timestamptz")
    .addColumn("card_channel", "text")
    .addColumn("card_ts", "text")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await sql`create index escalations_open_idx on escalations (respond_by) where status = 'open'`.execute(
    db,
  );
  await db.schema.createIndex("escalations_task_idx").on("escalations").column("task_id").execute();

  // One row per scheduled firing: the first replica to insert it sends the digest.
  await db.schema
    .createTable("scheduled_runs")
    .addColumn("job", "text", (c) => c.notNull())
    .addColumn("fire_at", "timestamptz", (c) => c.notNull())
    .addColumn("claimed_by", "text", (c) => c.notNull())
    .addColumn("claimed_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("finished_at", "timestamptz")
    .addPrimaryKeyConstraint("scheduled_runs_pk", ["job", "fire_at"])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of ["scheduled_runs", "escalations", "approvals"]) {
    await db.schema.dropTable(table).ifExists().execute();
  }
}
