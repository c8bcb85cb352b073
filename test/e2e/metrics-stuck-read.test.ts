import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import pg from "pg";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";

// The approvals gauges are read from Postgres at each scrape. A read that never ended (a lock held
// on approvals by a migration or a long transaction, a database gone silent) held every scrape:
// Prometheus got nothing, not even the error counters, when the operator needed them most.

let h: Harness;
before(async () => {
  h = await startHarness({ script: scriptByAgent({ "customer-service": [{ content: "ok." }] }) });
});
after(async () => {
  await h.close();
});

test("/metrics answers with the last values while the approvals gauges' read is stuck", async () => {
  const metrics = `http://127.0.0.1:${h.baton.port}/metrics`;
  assert.match(await (await fetch(metrics)).text(), /^baton_approvals_waiting 0$/m);
  const locker = new pg.Client({ connectionString: h.db.url });
  await locker.connect();
  try {
    await locker.query("begin");
    await locker.query("lock table approvals in access exclusive mode");
    // Prometheus's default scrape timeout is 10 s; Baton's patience with the read is 2 s.
    const answer = await fetch(metrics, { signal: AbortSignal.timeout(8_000) });
    assert.equal(answer.status, 200);
    assert.match(await answer.text(), /^baton_approvals_waiting 0$/m);
  } finally {
    await locker.query("rollback").catch(() => {});
    await locker.end();
  }
});
