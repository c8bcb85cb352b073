import type { Kysely } from "kysely";

/**
 * Why a call waits, when its own arguments do not say (a threshold passed with the task's earlier
 * calls): every card of the approval shows it, the fallback's and the decided one's too.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("approvals").addColumn("why", "text").execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("approvals").dropColumn("why").execute();
}
