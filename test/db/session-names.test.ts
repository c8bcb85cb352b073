import assert from "node:assert/strict";
import { test } from "node:test";
import { openDatabase, sessionName } from "../../src/db/database.ts";
import { testServerUrl } from "../support/db.ts";

// The outbox tells rows another process wrote by the writing session's application_name: replicas
// given one DATABASE_URL that sets it must still stamp their rows apart.
test("a DATABASE_URL's own application_name comes after each process's own id", async () => {
  const url = new URL(await testServerUrl());
  url.searchParams.set("application_name", "shop-replicas");
  const first = openDatabase(url.toString(), { name: "baton-aaaaaaaaaaaa" });
  const second = openDatabase(url.toString(), { name: "baton-bbbbbbbbbbbb" });
  try {
    assert.equal(await sessionName(first.db), "baton-aaaaaaaaaaaa shop-replicas");
    assert.equal(await sessionName(second.db), "baton-bbbbbbbbbbbb shop-replicas");
  } finally {
    await Promise.all([first.close(), second.close()]);
  }
});

test("without one in DATABASE_URL, the session is named by the process's id alone", async () => {
  const handle = openDatabase(await testServerUrl(), { name: "baton-cccccccccccc" });
  try {
    assert.equal(await sessionName(handle.db), "baton-cccccccccccc");
  } finally {
    await handle.close();
  }
});
