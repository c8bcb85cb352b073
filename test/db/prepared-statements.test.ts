import assert from "node:assert/strict";
import { test } from "node:test";
import { sql } from "kysely";
import { databaseForFile } from "../support/db.ts";

const t = databaseForFile();

test("statements are prepared once per connection and reused", async () => {
  const db = t.db;
  for (let i = 0; i < 3; i++) {
    const rows = await sql<{ n: number }>`select ${i}::int as n`.execute(db);
    assert.deepEqual(rows.rows, [{ n: i }]);
  }
  const prepared = await db.connection().execute(async (conn) => {
    await sql`select ${1}::int as warm`.execute(conn);
    return sql<{
      statement: string;
    }>`select statement from pg_prepared_statements where statement like ${"%as warm%"}`.execute(
      conn,
    );
  });
  assert.equal(
    prepared.rows.length,
    1,
    "the parameterised statement is a named prepared statement",
  );
});

test("a table changed under a prepared statement fails that call once, then works unprepared", async () => {
  const db = t.db;
  await sql`create table widgets (id int primary key)`.execute(db);
  await sql`insert into widgets values (1)`.execute(db);
  const readAll = () =>
    db.connection().execute((conn) => sql`select * from widgets where id = ${1}`.execute(conn));
  // One connection, so the second read meets the plan the first one cached.
  const sameConnection = await db.connection().execute(async (conn) => {
    const first = await sql`select * from widgets where id = ${1}`.execute(conn);
    await sql`alter table widgets add column name text default 'lamp'`.execute(conn);
    const stale = await sql`select * from widgets where id = ${1}`.execute(conn).then(
      () => "worked",
      (error: { code?: string }) => error.code,
    );
    const again = await sql`select * from widgets where id = ${1}`.execute(conn);
    return { first: first.rows, stale, again: again.rows };
  });
  assert.deepEqual(sameConnection.first, [{ id: 1 }]);
  assert.equal(sameConnection.stale, "0A000", "Postgres refuses the stale cached plan");
  assert.deepEqual(sameConnection.again, [{ id: 1, name: "lamp" }], "the retry is sent unprepared");
  assert.deepEqual((await readAll()).rows, [{ id: 1, name: "lamp" }]);
});
