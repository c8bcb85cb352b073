import { type Kysely, sql } from "kysely";

/**
 * The maintenance sweep, every 15 s on every replica, looks for ended tasks whose run died before
 * giving them up (their lease still set): a handful, among every task ever answered. Without this
 * index it read the whole tasks table each time. A release clears the lease, so the index holds
 * only the dead runs' tasks.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index tasks_ended_leased_idx on tasks (lease_until)
    where lease_until is not null and status in ('done', 'failed')`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index tasks_ended_leased_idx`.execute(db);
}
