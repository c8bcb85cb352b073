import type { Kysely } from "kysely";

/**
 * Whether the run holding a task's lease finished its work (its last turn answered, failed, or left
 * the task to a person) and held on only to post what it said and let the task go. A claim that
 * takes such a lease over, once it ran out, records no lost try: the worker died with nothing lost,
 * even if a reply or a decision has woken the task since.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable("tasks")
    .addColumn("lease_finished", "boolean", (c) => c.notNull().defaultTo(false))
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("tasks").dropColumn("lease_finished").execute();
}
