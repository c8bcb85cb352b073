import { type Kysely, sql } from "kysely";

/**
 * An escalation card posted outside its task's thread (a task asked in a direct message): a reply
 * in the card's thread, such as "@Baton billing: …" from the person holding it, finds its task.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index escalations_card_idx on escalations (card_channel, card_ts)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index escalations_card_idx`.execute(db);
}
