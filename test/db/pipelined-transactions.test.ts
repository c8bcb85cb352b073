import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CompiledQuery, sql } from "kysely";
import { type Db, openDatabase } from "../../src/db/database.ts";
import { lastStatement } from "../../src/db/pipelined-client.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

// One connection, so every transaction below meets what the one before it left on it.
let t: TestDatabase;
let db: Db;
let close: () => Promise<void>;
before(async () => {
  t = await createTestDatabase();
  await sql`create table notes (id int primary key)`.execute(t.db);
  ({ db, close } = openDatabase(t.url, { max: 1 }));
});
after(async () => {
  await close();
  await t.drop();
});

const insert = (id: number) => CompiledQuery.raw("insert into notes (id) values ($1)", [id]);
const insertLast = (id: number) =>
  CompiledQuery.raw(lastStatement("insert into notes (id) values ($1)"), [id]);
async function ids(): Promise<number[]> {
  const rows = await sql<{ id: number }>`select id from notes order by id`.execute(db);
  return rows.rows.map((r) => r.id);
}
async function clear(): Promise<void> {
  await sql`delete from notes`.execute(db);
}

test("a transaction's first statement goes out with its BEGIN, inside it: a rollback undoes it", async () => {
  await clear();
  await assert.rejects(
    db.transaction().execute(async (tx) => {
      await tx.executeQuery(insert(1));
      const inside = await sql<{ n: number }>`select count(*)::int as n from notes`.execute(tx);
      assert.equal(inside.rows[0]?.n, 1);
      throw new Error("changed my mind");
    }),
    /changed my mind/,
  );
  assert.deepEqual(await ids(), []);
  // The connection is back outside any transaction: this commits on its own.
  await db.executeQuery(insert(2));
  assert.deepEqual(await ids(), [2]);
});

test("a transaction that ends before any statement sends nothing and commits", async () => {
  assert.equal(await db.transaction().execute(async () => "nothing to do"), "nothing to do");
  await assert.rejects(
    db.transaction().execute(async () => {
      throw new Error("before any statement");
    }),
    /before any statement/,
  );
  await db.executeQuery(insert(3));
  assert.ok((await ids()).includes(3));
});

test("a statement marked last commits the transaction with it", async () => {
  await clear();
  await db.transaction().execute(async (tx) => {
    await tx.executeQuery(insert(1));
    await tx.executeQuery(insertLast(2));
  });
  assert.deepEqual(await ids(), [1, 2]);
  // A one-statement transaction: BEGIN, the statement and COMMIT in one round trip.
  await db.transaction().execute((tx) => tx.executeQuery(insertLast(3)));
  assert.deepEqual(await ids(), [1, 2, 3]);
});

test("a last statement that fails rolls back everything before it and throws its own error", async () => {
  await clear();
  await db.executeQuery(insert(1));
  const error = await db
    .transaction()
    .execute(async (tx) => {
      await tx.executeQuery(insert(2));
      await tx.executeQuery(insertLast(1)); // duplicate key
    })
    .then(
      () => undefined,
      (e: { code?: string }) => e,
    );
  assert.equal(error?.code, "23505", "the statement's own error, not the COMMIT's");
  assert.deepEqual(await ids(), [1]);
});

test("baton_require fails a last statement (BT001) and the whole transaction rolls back", async () => {
  await clear();
  const error = await db
    .transaction()
    .execute(async (tx) => {
      await tx.executeQuery(insert(5));
      await tx.executeQuery(
        CompiledQuery.raw(lastStatement("select baton_require($1::boolean, 'the task moved on')"), [
          false,
        ]),
      );
    })
    .then(
      () => undefined,
      (e: { code?: string; message?: string }) => e,
    );
  assert.equal(error?.code, "BT001");
  assert.match(String(error?.message), /the task moved on/);
  assert.deepEqual(await ids(), []);
});

test("nothing may follow a transaction's last statement", async () => {
  await clear();
  await assert.rejects(
    db.transaction().execute(async (tx) => {
      await tx.executeQuery(insertLast(1));
      await tx.executeQuery(insert(2));
    }),
    /after its transaction's last one/,
  );
  // The last statement had committed; the one after it was never sent.
  assert.deepEqual(await ids(), [1]);
  await db.transaction().execute((tx) => tx.executeQuery(insert(3)));
  assert.deepEqual(await ids(), [1, 3]);
});

test("a transaction of one statement reaches the server in one write: BEGIN, statement and COMMIT", async () => {
  await clear();
  const handle = openDatabase(t.url, { max: 1 });
  try {
    // Warm: the connection is open and the statement prepared, so only the transaction is counted.
    await handle.db.transaction().execute((tx) => tx.executeQuery(insertLast(40)));
    let writes = 0;
    handle.pool.on("acquire", (client) => {
      const stream = (client as unknown as { connection: { stream: Record<string, unknown> } })
        .connection.stream;
      for (const method of ["_write", "_writev"]) {
        const original = stream[method] as (...args: unknown[]) => unknown;
        stream[method] = function (this: unknown, ...args: unknown[]) {
          writes++;
          return original.apply(this, args);
        };
      }
    });
    await handle.db.transaction().execute((tx) => tx.executeQuery(insertLast(41)));
    assert.equal(writes, 1);
  } finally {
    await handle.close();
  }
  assert.deepEqual(await ids(), [40, 41]);
});
