import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { sql } from "kysely";
import type { Clock } from "../../src/core/ports.ts";
import { databaseNow } from "../../src/db/reports.repository.ts";
import { runDigest } from "../../src/runtime/digest.ts";
import { runMaintenance } from "../../src/runtime/maintenance.ts";
import { slackDate } from "../../src/slack/mrkdwn.ts";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForEscalationCard } from "../support/observe.ts";
import { recordingChat } from "../support/recording-chat.ts";
import {
  blockTexts,
  escalationScript,
  finishedTask,
  orderReturnScript,
  refundsOf,
  taskOfThread,
} from "../support/scripts-humans.ts";
import { runBaton } from "../support/slash-command.ts";

// Replicas' clocks drift; the database's is the one they share. An approval's or escalation's
// deadline is set and judged by it, so a replica whose own clock is hours off neither expires work
// early nor lets a late click through, and every replica agrees on what is due. So is the time a
// card says a person decided, and what the daily digest calls stale.

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
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

test("a replica whose clock runs a day slow takes an escalation over and closes it: its card shows the database's times", async () => {
  h = await startHarness({ script: scriptByAgent(escalationScript()) });
  const harness = h;
  const { ts } = await harness.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(harness);
  skewed(harness, -DAY);
  // agents.yml: support is #support's, and U0SUPPORTLEAD one of its members.
  await harness.clickCard("U0SUPPORTLEAD", ESCALATION_TAKE_OVER, escalation, ts);
  const decidedAt = await harness.until("the escalation to be taken over", async () => {
    const row = await harness.db.db
      .selectFrom("escalations")
      .select("decided_at")
      .where("id", "=", escalation.id)
      .executeTakeFirstOrThrow();
    return row.decided_at ?? undefined;
  });
  assert.ok(decidedAt >= escalation.created_at, "decided after it was asked");
  assert.ok(decidedAt <= (await databaseNow(harness.db.db)));

  const { text } = await runBaton(harness, `done ${escalation.task_id}`, {
    user: "U0SUPPORTLEAD",
    channel: "C0SUPPORT",
  });
  assert.match(text, /^Done: /);
  const closedAt = (await taskOfThread(harness.db.db, ts))?.closed_at;
  assert.ok(closedAt);
  const card = await harness.until("the card to show the task done", async () =>
    harness.slack
      .callsTo("chat.update")
      .find((c) => c.args.ts === escalation.card_ts && /marked done by/.test(blockTexts(c).join())),
  );
  const shown = blockTexts(card).join("\n");
  assert.ok(shown.includes(`Taken over by <@U0SUPPORTLEAD> ${slackDate(decidedAt)}`), shown);
  assert.ok(shown.includes(`marked done by <@U0SUPPORTLEAD> ${slackDate(closedAt)}`), shown);
});

test("a replica whose clock runs days fast sends the digest: what is stale is judged by the database's clock", async () => {
  h = await startHarness({ script: scriptByAgent({}) });
  const harness = h;
  let n = 0;
  // Touched by the database's clock, as Baton touches them: agents.yml's stale_after is 24h.
  for (const [title, idle] of [
    ["idle a day and an hour", "25 hours"],
    ["idle an hour", "1 hour"],
  ] as const)
    await harness.db.db
      .insertInto("tasks")
      .values({
        channel_id: "C0OPS",
        thread_ts: `1736000000.00000${++n}`,
        requester_id: "U0DANA",
        title,
        request_text: title,
        status: "waiting_human",
        owner_kind: "human",
        owner_id: "U0ANN",
        handback_stack: "[]",
        facts: "{}",
        cost_usd: 0,
        last_activity_at: sql<Date>`now() - ${idle}::interval`,
      })
      .execute();
  skewed(harness, 2 * DAY);

  const { chat, sent } = recordingChat(harness.baton.deps.chat.threadLink);
  const before = await databaseNow(harness.db.db);
  // The replica's runtime deps, its own clock among them.
  await runDigest(
    { ...harness.baton.deps, agentsFile: harness.agentsFile, chat, threadLink: chat.threadLink },
    new Date(),
    "replica-fast",
  );
  const after = await databaseNow(harness.db.db);
  const digest = sent.find((i) => i.kind === "digest")?.digest;
  assert.ok(digest);
  assert.deepEqual(
    digest.staleTasks.map((t) => t.title),
    ["idle a day and an hour"],
  );
  const asOf = new Date(digest.asOf);
  assert.ok(before <= asOf && asOf <= after, `as of ${digest.asOf}, by the database's clock`);
});
