import { type Kysely, sql } from "kysely";

/**
 * `baton_require(ok, message)`: raises `message` (SQLSTATE BT001) unless `ok`. A transaction's last
 * statement is sent together with its COMMIT, so it must fail, and roll everything back, when it
 * finds the state it was written for gone: returning no row would come too late.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create or replace function baton_require(ok boolean, message text) returns boolean
    language plpgsql volatile as $$
    begin
      if not ok then
        raise exception using errcode = 'BT001', message = message;
      end if;
      return true;
    end
    $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function if exists baton_require(boolean, text)`.execute(db);
}
