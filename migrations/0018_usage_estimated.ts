import type { Kysely } from "kysely";

/**
 * A model call whose server sent no token usage: its tokens were estimated from the characters it
 * sent and received (1 token per 3), and counted toward the caps and cost all the same.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable("model_calls")
    .addColumn("usage_estimated", "boolean", (c) => c.notNull().defaultTo(false))
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("model_calls").dropColumn("usage_estimated").execute();
}
