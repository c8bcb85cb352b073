import { type Kysely, sql } from "kysely";

/**
 * Who wrote in a task, by task: a click on an approval asks whether the clicker wrote any of what
 * the agent had read when it asked (their own request, which they may not approve).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index task_inputs_author_idx on task_inputs (task_id, author_id)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index task_inputs_author_idx`.execute(db);
}
