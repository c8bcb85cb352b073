import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { runMaintenance } from "../../src/runtime/maintenance.ts";
import { insertOrderTask } from "../support/db.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { auditEvents, waitForEscalationCard } from "../support/observe.ts";
import { escalationScript, missEscalationDeadline } from "../support/scripts-humans.ts";

// The sweep's steps are independent: the job queue failing for one orphaned task stopped the
// sweep there, so no stranded Slack message was delivered and no deadline was enforced.

let h: Harness;
before(async () => {
  h = await startHarness({ script: scriptByAgent(escalationScript()), maintenance: false });
});
after(async () => {
  await h.close();
});

test("a sweep whose job queue fails for an orphaned task still enforces the deadlines", async () => {
  const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(h);
  await missEscalationDeadline(h.db.db, escalation.id);
  // An active task no run holds, and a queue that fails for it.
  await insertOrderTask(h.db.db, `${ts}9`);
  const queue = h.baton.deps.queue;
  let tried = 0;
  queue.enqueueUnlessWaiting = async () => {
    tried++;
    throw new Error("the job queue is away");
  };

  await runMaintenance(h.baton.deps);
  assert.ok(tried >= 1, "the sweep met the failing step");
  const reminded = await auditEvents(h.db.db, escalation.task_id, "escalation_reminded");
  assert.equal(reminded.length, 1, "the deadline was enforced after the failed step");
});
