import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { haltTask } from "../../src/runtime/halt.ts";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForEscalationCard } from "../support/observe.ts";
import { escalationScript, taskOfThread } from "../support/scripts-humans.ts";

// A cost cap is checked on a run's copy of its task. A halt that lands after a person took the task
// over (the run's lease lapsed, or a second run halted it too) escalated the held task again: a
// second card, the task moved to the owners' lane without a word to the person holding it, and the
// first card's "Hand it to an agent" left live for good.

const SUPPORT_LEAD = "U0SUPPORTLEAD";

let h: Harness;
before(async () => {
  h = await startHarness({ script: scriptByAgent(escalationScript()) });
});
after(async () => {
  await h.close();
});

test("a cap halt landing on a task a person took over leaves it with them", async () => {
  const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(h);
  await h.clickCard(SUPPORT_LEAD, ESCALATION_TAKE_OVER, escalation, ts);
  const held = await h.until("the lead to hold the task", async () => {
    const task = await taskOfThread(h.db.db, ts);
    return task?.owner_id === SUPPORT_LEAD ? task : undefined;
  });

  await haltTask(h.baton.deps, held, { reason: "over the cap", toHuman: true });

  const after = await taskOfThread(h.db.db, ts);
  assert.deepEqual(
    [after?.owner_kind, after?.owner_id, after?.status],
    ["human", SUPPORT_LEAD, "waiting_human"],
  );
  const rows = await h.db.db
    .selectFrom("escalations")
    .select(["status", "decided_by"])
    .where("task_id", "=", held.id)
    .execute();
  assert.deepEqual(
    rows,
    [{ status: "taken_over", decided_by: SUPPORT_LEAD }],
    "no second escalation",
  );
});
