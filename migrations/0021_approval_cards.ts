import { type Kysely, sql } from "kysely";

/**
 * An approval card posted outside its task's thread (a task asked in a direct message): a reply in
 * the card's thread, such as an approver's "@Baton why 149?", finds its task, as an escalation
 * card's does (0014).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index approvals_card_idx on approvals (card_channel, card_ts)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index approvals_card_idx`.execute(db);
}
