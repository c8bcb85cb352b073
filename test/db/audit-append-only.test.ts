import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { sql } from "kysely";
import { audit } from "../../src/db/ledger.repository.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

// The audit trail is append-only: no statement rewrites or empties it, whoever sends it.

let t: TestDatabase;
before(async () => {
  t = await createTestDatabase();
  await audit(t.db, {
    taskId: null,
    actor: { kind: "system", id: "baton" },
    kind: "test",
    data: {},
  });
});
after(() => t.drop());

const appendOnly = /audit_events is append-only/;

test("an audit event cannot be updated or deleted", async () => {
  await assert.rejects(sql`update audit_events set kind = 'other'`.execute(t.db), appendOnly);
  await assert.rejects(sql`delete from audit_events`.execute(t.db), appendOnly);
});

test("the audit trail cannot be truncated", async () => {
  await assert.rejects(sql`truncate audit_events`.execute(t.db), appendOnly);
  const { count } = await t.db
    .selectFrom("audit_events")
    .select((eb) => eb.fn.countAll<string>().as("count"))
    .executeTakeFirstOrThrow();
  assert.equal(Number(count), 1);
});
