import assert from "node:assert/strict";
import { test } from "node:test";
import { sql } from "kysely";
import { serverCpuMeter } from "../../scripts/bench-chain.ts";
import { databaseForFile } from "../support/db.ts";

const t = databaseForFile();

test("the bench's server CPU meter counts what the database server spent, and only for a local Postgres", async () => {
  const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(t.db);
  const meter = serverCpuMeter(Number(rows[0]?.pid));
  // Both the embedded server and the machine's run here, as Postgres processes this user can read.
  assert.ok(meter, "a local Postgres is metered");
  const before = meter();
  const started = process.cpuUsage();
  await sql`select count(*) from generate_series(1, 3000000)`.execute(t.db);
  const spent = meter() - before;
  const ours = process.cpuUsage(started);
  // Counting three million rows takes the server tens of milliseconds; this process waits.
  assert.ok(spent > 20, `the server's CPU grew by ${spent.toFixed(1)} ms`);
  assert.ok(spent > (ours.user + ours.system) / 1000, "the server's CPU, not this process's");
  // A process that is not a Postgres backend (this one) is not metered.
  assert.equal(serverCpuMeter(process.pid), undefined);
});
