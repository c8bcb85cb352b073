import assert from "node:assert/strict";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CHANNEL, type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { whereIsMyOrderScript } from "../support/scripts.ts";
import { auditKinds, finishedTask, taskOfThread } from "../support/scripts-humans.ts";

// A run that delivers its thread through the locked path (a post failed) and is asked by Slack to
// wait (a 429) waits it out for its own thread. It keeps its lease meanwhile: a lease left to run
// out would have the task taken over by another run, and the audit would say this run died.

let h: Harness | undefined;
after(async () => {
  await h?.close();
});

test("a run waiting out Slack's 429 keeps its lease: no other run takes the task, no lost try", async () => {
  const LEASE_MS = 1_000;
  h = await startHarness({ script: scriptByAgent(whereIsMyOrderScript()), leaseMs: LEASE_MS });
  const harness = h;
  // The first post fails, so the run delivers through the outbox, which first looks in the thread
  // for it: Slack rate-limits that look for three lease lengths.
  harness.slack.failNext("chat.postMessage", { error: "internal_error" });
  harness.slack.failNext("conversations.replies", { error: "ratelimited", retryAfter: 3 });
  const { ts } = await harness.mention("where is order 1042?");
  await harness.slack.waitForCall("conversations.replies", (c) => c.failed !== undefined);
  const task = await taskOfThread(harness.db.db, ts);
  assert.ok(task);

  // Past the lease's length, while the run waits: its lease is still its own, and running.
  await sleep(LEASE_MS * 1.7);
  const leased = await harness.db.db
    .selectFrom("tasks")
    .select((eb) => ["lease_owner", eb("lease_until", ">", new Date()).as("live")])
    .where("id", "=", task.id)
    .executeTakeFirstOrThrow();
  assert.ok(leased.lease_owner, "the run still holds the task");
  assert.equal(leased.live, true, "its lease was renewed while it waited");

  await harness.until("the task to finish", () => finishedTask(harness.db.db, ts));
  assert.deepEqual(await auditKinds(harness.db.db, task.id, "attempt_failed"), [], "no try lost");
  const names = harness.slack
    .messagesIn(CHANNEL, ts)
    .slice(1)
    .map((m) => m.username);
  assert.deepEqual(names, [
    "Customer Service",
    "Fulfillment",
    "Inventory",
    "Fulfillment",
    "Customer Service",
  ]);
});
