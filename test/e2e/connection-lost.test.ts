import assert from "node:assert/strict";
import { after, test } from "node:test";
import pg from "pg";
import { isConnectionLost } from "../../src/db/database.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { assertFlowOneDoneOnce, flowOneByState } from "../support/scripts.ts";
import { finishedTask } from "../support/scripts-humans.ts";

/** Ends every other session on the test's database, as a Postgres restart or a failover does. */
async function dropConnections(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>(
      `select pid from pg_stat_activity
       where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'`,
    );
    await client.query("select pg_terminate_backend(pid) from unnest($1::int[]) as pid", [
      rows.map((r) => r.pid),
    ]);
    return rows.length;
  } finally {
    await client.end();
  }
}

/** A check that a dropped connection under the test's own pool retries instead of failing. */
function retrying<T>(check: () => Promise<T | undefined>) {
  return async () => {
    try {
      return await check();
    } catch (error) {
      // The test's own pooled connections were dropped too (EPIPE, 57P01, "Connection terminated").
      if (isConnectionLost(error)) return undefined;
      throw error;
    }
  };
}

const harnesses: Harness[] = [];
after(async () => {
  for (const h of harnesses) await h.close();
});

/**
 * Flow 1 with every database connection dropped once, where `at` says: while the run waits for
 * Inventory's model call (Baton's pool, the run's statement lane, and the queue's connections go,
 * with the stock read's turn perhaps still in flight), or inside adjust_stock, with its transaction
 * open and the tool's own statement about to go out on the dropped connection.
 */
async function flowWithConnectionsDropped(at: "model" | "tool") {
  let dropped = 0;
  const drop = async () => {
    if (dropped === 0) dropped = await dropConnections(h.db.url);
  };
  const tools = demoTools.map((tool) =>
    at === "tool" && tool.name === "adjust_stock"
      ? {
          ...tool,
          run: async (...args: Parameters<typeof tool.run>) => {
            await drop();
            return tool.run(...args);
          },
        }
      : tool,
  );
  const h: Harness = await startHarness({
    tools,
    script: flowOneByState(async (agent, next) => {
      const name = "toolCalls" in next ? next.toolCalls[0]?.name : undefined;
      if (at === "model" && agent === "inventory" && name === "adjust_stock") await drop();
    }),
  });
  harnesses.push(h);

  const { status, ts } = await h.mention("where is order 1042?");
  assert.equal(status, 200);
  const task = await h.until(
    "the task to finish after its connections were lost",
    retrying(() => finishedTask(h.db.db, ts)),
    30_000,
  );
  assert.ok(dropped > 0, "connections were dropped under the task");

  await assertFlowOneDoneOnce({ db: h.db.db, slack: h.slack, until: h.until }, task, ts);
}

test("every database connection lost while a run waits for the model: the task finishes, each effect once", async () => {
  await flowWithConnectionsDropped("model");
});

test("every database connection lost inside a write tool's transaction: the tool runs once, on the retry", async () => {
  await flowWithConnectionsDropped("tool");
});
