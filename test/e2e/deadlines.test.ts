import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { sql } from "kysely";
import { ownershipHistory } from "../../src/db/ledger.repository.ts";
import { runMaintenance } from "../../src/runtime/maintenance.ts";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import {
  escalationScript,
  finishedTask,
  orderReturnScript,
  refundsOf,
} from "../support/scripts-humans.ts";

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

test("an approval past its deadline goes to its fallback with a reminder; the fallback's approval runs it once", async () => {
  h = await startHarness({ script: scriptByAgent(orderReturnScript()) });
  const harness = h;
  const { ts } = await harness.mention("I'd like to return order 1077, please refund me");
  const parked = await harness.until("the refund to wait", async () => {
    const row = await harness.db.db.selectFrom("approvals").selectAll().executeTakeFirst();
    return row?.card_ts ? row : undefined;
  });
  await harness.db.db
    .updateTable("approvals")
    .set({ expires_at: sql`now() - interval '1 minute'` })
    .where("id", "=", parked.id)
    .execute();

  await runMaintenance(harness.baton.deps);
  await runMaintenance(harness.baton.deps); // a second replica's pass changes nothing

  const moved = await harness.db.db
    .selectFrom("approvals")
    .selectAll()
    .where("id", "=", parked.id)
    .executeTakeFirstOrThrow();
  assert.equal(moved.status, "pending");
  assert.deepEqual(moved.approvers, { users: ["U0OPSMANAGER"], groups: [] });
  assert.ok(moved.expires_at.getTime() > Date.now(), "the fallback gets a new deadline");
  assert.notEqual(moved.card_ts, parked.card_ts, "the fallback gets a fresh card to click");
  const history = await ownershipHistory(harness.db.db, parked.task_id);
  assert.equal(history.filter((x) => x.kind === "approval_escalated").length, 1);
  const reminders = harness.slack
    .callsTo("chat.postMessage")
    .filter((c) => c.args.thread_ts === ts && String(c.args.text).includes("in time"));
  assert.equal(reminders.length, 1);
  assert.match(String(reminders[0]?.args.text), /U0OPSMANAGER/);

  // The original approvers no longer decide; the fallback does.
  await harness.clickCard("U0LEE", APPROVAL_APPROVE, moved, ts);
  assert.equal((await refundsOf(harness.db.db)).length, 0);
  await harness.clickCard("U0OPSMANAGER", APPROVAL_APPROVE, moved, ts);
  await harness.until("the task to finish", () => finishedTask(harness.db.db, ts));
  assert.equal((await refundsOf(harness.db.db)).length, 1);
});

test("an escalation nobody picked up in time gets a reminder in its thread, once", async () => {
  h = await startHarness({ script: scriptByAgent(escalationScript()) });
  const harness = h;
  const { ts } = await harness.mention("I was charged twice and I'm furious");
  const escalation = await harness.until("the escalation", async () => {
    const row = await harness.db.db.selectFrom("escalations").selectAll().executeTakeFirst();
    return row?.card_ts ? row : undefined;
  });
  await harness.db.db
    .updateTable("escalations")
    .set({ respond_by: sql`now() - interval '1 minute'` })
    .where("id", "=", escalation.id)
    .execute();
  await runMaintenance(harness.baton.deps);
  await runMaintenance(harness.baton.deps);
  const reminders = harness.slack
    .callsTo("chat.postMessage")
    .filter((c) => c.args.thread_ts === ts && String(c.args.text).includes("Reminder"));
  assert.equal(reminders.length, 1);
  const audit = await harness.db.db
    .selectFrom("audit_events")
    .select("kind")
    .where("task_id", "=", escalation.task_id)
    .where("kind", "=", "escalation_reminded")
    .execute();
  assert.equal(audit.length, 1);
});
