import assert from "node:assert/strict";
import { after, test } from "node:test";
import { testServerUrl } from "../support/db.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { assertFlowOneDoneOnce, flowOneByState } from "../support/scripts.ts";
import { finishedTask } from "../support/scripts-humans.ts";
import { startTcpProxy, throughProxy } from "../support/tcp-proxy.ts";

const OUTAGE_MS = 3_000;

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

test("Postgres unreachable for three seconds mid-task: Baton stays up, and the task finishes once it is back", async () => {
  const proxy = await startTcpProxy(throughProxy(await testServerUrl(), 0).target);
  cleanups.push(proxy.close);
  let cutAt = 0;
  let restoredAt = 0;
  const h: Harness = await startHarness({
    databaseUrl: (url) => throughProxy(url, proxy.port).url,
    // The background sweeps run too, and meet the outage like everything else.
    maintenance: true,
    script: flowOneByState(async (agent, next) => {
      const name = "toolCalls" in next ? next.toolCalls[0]?.name : undefined;
      // Inventory is about to correct the count: the database goes away under the run.
      if (agent === "inventory" && name === "adjust_stock" && cutAt === 0) {
        cutAt = Date.now();
        proxy.cut();
        setTimeout(() => {
          restoredAt = Date.now();
          proxy.restore();
        }, OUTAGE_MS);
      }
    }),
  });
  cleanups.push(h.close);

  const { status, ts } = await h.mention("where is order 1042?");
  assert.equal(status, 200);
  // The test's own connections do not go through the proxy.
  const task = await h.until("the task to finish", () => finishedTask(h.db.db, ts), 60_000);
  assert.ok(cutAt > 0 && restoredAt > 0, "the database was cut under the task, and restored");
  assert.ok(proxy.refused > 0, "Baton tried to reach the database while it was away");
  await assertFlowOneDoneOnce({ db: h.db.db, slack: h.slack, until: h.until }, task, ts);
});
