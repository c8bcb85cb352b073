import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { sql } from "kysely";
import type { Clock } from "../../src/core/ports.ts";
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

// Replicas' clocks drift; the database's is the one they share. An approval's or escalation's
// deadline is set and judged by it, so a replica whose own clock is hours off neither expires work
// early nor lets a late click through, and every replica agrees on what is due.

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const HOUR = 3_600_000;
/** agents.yml: a refund over 100 USD waits 4h for a billing lead, then goes to U0OPSMANAGER. */
const EXPIRES_AFTER = 4 * HOUR;
const FALLBACK = { users: ["U0OPSMANAGER"], groups: [] };

/** This process's clock, off from the database's by `offsetMs`, as a replica's may be. */
function skewed(harness: Harness, offsetMs: number): void {
  const clock: Clock = { now: () => new Date(Date.now() + offsetMs) };
  harness.baton.deps.clock = clock;
}

async function parkedRefund(harness: Harness) {
  const { ts } = await harness.mention("I'd like to return order 1077, please refund me");
  const parked = await harness.until("the refund to wait on its card", async () => {
    const row = await harness.db.db.selectFrom("approvals").selectAll().executeTakeFirst();
    return row?.card_ts ? row : undefined;
  });
  return { ts, parked };
}

const approvalNow = (harness: Harness, id: string) =>
  harness.db.db.selectFrom("approvals").selectAll().where("id", "=", id).executeTakeFirstOrThrow();

test("a replica whose clock runs slow asks for approval: the deadline is the window from the database's now", async () => {
  h = await startHarness({ script: scriptByAgent(orderReturnScript()) });
  const harness = h;
  skewed(harness, -5 * HOUR);
  const { parked } = await parkedRefund(harness);
  assert.equal(parked.expires_at.getTime() - parked.created_at.getTime(), EXPIRES_AFTER);

  // A replica with a right clock sweeps: nothing is due.
  skewed(harness, 0);
  await runMaintenance(harness.baton.deps);
  const still = await approvalNow(harness, parked.id);
  assert.equal(still.status, "pending");
  assert.equal(still.escalated_at, null, "not handed to the fallback hours early");
});

test("a replica whose clock runs fast neither sweeps an approval early nor refuses its click as late", async () => {
  h = await startHarness({ script: scriptByAgent(orderReturnScript()) });
  const harness = h;
  const { ts, parked } = await parkedRefund(harness);
  skewed(harness, EXPIRES_AFTER + HOUR);

  await runMaintenance(harness.baton.deps);
  const swept = await approvalNow(harness, parked.id);
  assert.equal(swept.status, "pending");
  assert.equal(swept.escalated_at, null, "its deadline is hours away by the database's clock");

  await harness.clickCard("U0LEE", APPROVAL_APPROVE, parked, ts);
  const task = await harness.until("the task to finish", () => finishedTask(harness.db.db, ts));
  assert.ok(task);
  const decided = await approvalNow(harness, parked.id);
  assert.equal(decided.status, "approved");
  assert.equal(decided.decided_by, "U0LEE");
  assert.equal((await refundsOf(harness.db.db)).length, 1);
});

test("a click past the deadline on a replica whose clock runs slow approves nothing: the approval goes to its fallback", async () => {
  h = await startHarness({ script: scriptByAgent(orderReturnScript()) });
  const harness = h;
  const { ts, parked } = await parkedRefund(harness);
  await harness.db.db
    .updateTable("approvals")
    .set({ expires_at: sql`now() - interval '1 minute'` })
    .where("id", "=", parked.id)
    .execute();
  skewed(harness, -HOUR);

  await harness.clickCard("U0LEE", APPROVAL_APPROVE, parked, ts);
  const told = await harness.until("U0LEE to be told", async () =>
    harness.slack.callsTo("chat.postEphemeral").find((c) => c.args.user === "U0LEE"),
  );
  assert.match(String(told.args.text), /Only <@U0OPSMANAGER>/);
  const moved = await approvalNow(harness, parked.id);
  assert.equal(moved.status, "pending");
  assert.deepEqual(moved.approvers, FALLBACK);
  assert.ok(moved.escalated_at);
  // The fallback's window is the first one's (here a minute, the least), from when the database
  // moved it.
  assert.equal(moved.expires_at.getTime() - moved.escalated_at.getTime(), 60_000);
  assert.equal((await refundsOf(harness.db.db)).length, 0);
});

test("an escalation asked on a replica whose clock runs slow is due by the database's clock, and a fast replica's sweep leaves it", async () => {
  h = await startHarness({ script: scriptByAgent(escalationScript()) });
  const harness = h;
  skewed(harness, -5 * HOUR);
  await harness.mention("I was charged twice and I'm furious");
  const escalation = await harness.until("the escalation card", async () => {
    const row = await harness.db.db.selectFrom("escalations").selectAll().executeTakeFirst();
    return row?.card_ts ? row : undefined;
  });
  // agents.yml's support lane: respond_within is the default, 4h.
  assert.equal(escalation.respond_by.getTime() - escalation.created_at.getTime(), 4 * HOUR);

  skewed(harness, 5 * HOUR);
  await runMaintenance(harness.baton.deps);
  const still = await harness.db.db
    .selectFrom("escalations")
    .selectAll()
    .where("id", "=", escalation.id)
    .executeTakeFirstOrThrow();
  assert.equal(still.status, "open");
  assert.equal(still.escalated_at, null, "nobody reminded hours early");
});
