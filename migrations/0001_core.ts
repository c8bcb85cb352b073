import { type Kysely, sql } from "kysely";

/**
 * The core ledger: tasks, ownership changes, model and tool calls, the append-only audit trail,
 * received Slack events and the Slack outbox. Typed Kysely<any> so it never depends on today's types.
 * Only PostgreSQL 14 features.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("tasks")
    .addColumn("id", "uuid", (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn("channel_id", "text", (c) => c.notNull())
    .addColumn("thread_ts", "text", (c) => c.notNull())
    .addColumn("requester_id", "text", (c) => c.notNull())
    .addColumn("title", "text", (c) => c.notNull())
    .addColumn("request_text", "text", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull().defaultTo("active"))
    .addColumn("owner_kind", "text", (c) => c.notNull())
    .addColumn("owner_id", "text", (c) => c.notNull())
    .addColumn("urgency", "text", (c) => c.notNull().defaultTo("normal"))
    .addColumn("hop_count", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("step_no", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("stint_no", "integer", (c) => c.notNull().defaultTo(1))
    .addColumn("handback_stack", "jsonb", (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn("facts", "jsonb", (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn("tokens", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("cost_usd", "numeric(12, 6)", (c) => c.notNull().defaultTo(0))
    .addColumn("failure_reason", "text")
    .addColumn("model_errors", "integer", (c) => c.notNull().defaultTo(0))
    // Which worker drives the task now; a lease, so a dead worker's task is taken over.
    .addColumn("lease_owner", "text")
    .addColumn("lease_until", "timestamptz")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("last_activity_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("closed_at", "timestamptz")
    .addUniqueConstraint("tasks_thread_unique", ["channel_id", "thread_ts"])
    .execute();
  // The digest's stale-task scan reads only open tasks, oldest activity first.
  await sql`create index tasks_open_activity_idx on tasks (last_activity_at) where status in ('active', 'waiting_human')`.execute(
    db,
  );
  await sql`create index tasks_owner_idx on tasks (owner_kind, owner_id) where status in ('active', 'waiting_human')`.execute(
    db,
  );

  await db.schema
    .createTable("task_inputs")
    .addColumn("id", "bigserial", (c) => c.primaryKey())
    .addColumn("task_id", "uuid", (c) => c.notNull().references("tasks.id"))
    .addColumn("author_id", "text", (c) => c.notNull())
    .addColumn("text", "text", (c) => c.notNull())
    .addColumn("consumed_at_step", "integer")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await sql`create index task_inputs_pending_idx on task_inputs (task_id) where consumed_at_step is null`.execute(
    db,
  );

  await db.schema
    .createTable("handoffs")
    .addColumn("id", "bigserial", (c) => c.primaryKey())
    .addColumn("task_id", "uuid", (c) => c.notNull().references("tasks.id"))
    .addColumn("step_no", "integer", (c) => c.notNull())
    .addColumn("kind", "text", (c) => c.notNull())
    .addColumn("from_kind", "text", (c) => c.notNull())
    .addColumn("from_id", "text", (c) => c.notNull())
    .addColumn("to_kind", "text", (c) => c.notNull())
    .addColumn("to_id", "text", (c) => c.notNull())
    .addColumn("note", "jsonb", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createIndex("handoffs_task_idx")
    .on("handoffs")
    .columns(["task_id", "id"])
    .execute();

  await db.schema
    .createTable("conversation")
    .addColumn("id", "bigserial", (c) => c.primaryKey())
    .addColumn("task_id", "uuid", (c) => c.notNull().references("tasks.id"))
    .addColumn("stint_no", "integer", (c) => c.notNull())
    .addColumn("step_no", "integer", (c) => c.notNull())
    .addColumn("message", "jsonb", (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex("conversation_stint_idx")
    .on("conversation")
    .columns(["task_id", "stint_no", "id"])
    .execute();

  await db.schema
    .createTable("model_calls")
    .addColumn("id", "bigserial", (c) => c.primaryKey())
    .addColumn("task_id", "uuid", (c) => c.notNull().references("tasks.id"))
    .addColumn("step_no", "integer", (c) => c.notNull())
    .addColumn("agent_id", "text", (c) => c.notNull())
    .addColumn("model", "text", (c) => c.notNull())
    .addColumn("prompt_tokens", "integer", (c) => c.notNull())
    .addColumn("completion_tokens", "integer", (c) => c.notNull())
    .addColumn("cost_usd", "numeric(12, 6)", (c) => c.notNull())
    .addColumn("latency_ms", "integer", (c) => c.notNull())
    .addColumn("request_chars", "integer", (c) => c.notNull())
    .addColumn("outcome", "text", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint("model_calls_step_unique", ["task_id", "step_no"])
    .execute();

  await db.schema
    .createTable("tool_calls")
    .addColumn("id", "bigserial", (c) => c.primaryKey())
    .addColumn("task_id", "uuid", (c) => c.notNull().references("tasks.id"))
    .addColumn("step_no", "integer", (c) => c.notNull())
    .addColumn("agent_id", "text", (c) => c.notNull())
    .addColumn("tool", "text", (c) => c.notNull())
    .addColumn("tool_class", "text", (c) => c.notNull())
    .addColumn("args", "jsonb", (c) => c.notNull())
    .addColumn("idempotency_key", "text", (c) => c.notNull().unique())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("result", "jsonb")
    .addColumn("allowed_by", "text")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createIndex("tool_calls_task_idx")
    .on("tool_calls")
    .columns(["task_id", "id"])
    .execute();

  await db.schema
    .createTable("audit_events")
    .addColumn("id", "bigserial", (c) => c.primaryKey())
    .addColumn("task_id", "uuid")
    .addColumn("at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("actor_kind", "text", (c) => c.notNull())
    .addColumn("actor_id", "text", (c) => c.notNull())
    .addColumn("kind", "text", (c) => c.notNull())
    .addColumn("data", "jsonb", (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .execute();
  await db.schema
    .createIndex("audit_events_task_idx")
    .on("audit_events")
    .columns(["task_id", "id"])
    .execute();
  // Append-only: history is never rewritten, even by a bug.
  await sql`
    create function audit_events_append_only() returns trigger language plpgsql as $$
    begin
      raise exception 'audit_events is append-only';
    end $$`.execute(db);
  await sql`
    create trigger audit_events_no_rewrite before update or delete on audit_events
    for each statement execute function audit_events_append_only()`.execute(db);

  await db.schema
    .createTable("slack_events")
    .addColumn("event_id", "text", (c) => c.primaryKey())
    .addColumn("task_id", "uuid")
    .addColumn("received_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema
    .createTable("slack_outbox")
    .addColumn("id", "bigserial", (c) => c.primaryKey())
    .addColumn("task_id", "uuid")
    .addColumn("method", "text", (c) => c.notNull())
    .addColumn("payload", "jsonb", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull().defaultTo("pending"))
    .addColumn("attempts", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("slack_ts", "text")
    .addColumn("error", "text")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("sent_at", "timestamptz")
    .execute();
  await sql`create index slack_outbox_pending_idx on slack_outbox (id) where status <> 'sent'`.execute(
    db,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of [
    "slack_outbox",
    "slack_events",
    "audit_events",
    "tool_calls",
    "model_calls",
    "conversation",
    "handoffs",
    "task_inputs",
    "tasks",
  ]) {
    await db.schema.dropTable(table).ifExists().cascade().execute();
  }
  await sql`drop function if exists audit_events_append_only()`.execute(db);
}
