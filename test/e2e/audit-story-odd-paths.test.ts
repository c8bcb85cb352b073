import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import type { ToolDefinition } from "../../src/core/tools/tool.ts";
import { insertInput } from "../../src/db/turn-reads.repository.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { type AuditEntry, auditStory } from "../../src/runtime/audit-story.ts";
import { enforceDeadlines } from "../../src/runtime/deadlines.ts";
import { wakeIfMissed } from "../../src/runtime/missed-runs.ts";
import { APPROVAL_APPROVE, APPROVAL_REJECT } from "../../src/slack/views/approval-card.ts";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import {
  REJECT_REASON_ACTION,
  REJECT_REASON_BLOCK,
  REJECT_REASON_CALLBACK,
} from "../../src/slack/views/reject-modal.ts";
import {
  agentsFileWith,
  CHANNEL,
  type Harness,
  REQUESTER,
  SUPPORT_LANE,
  startHarness,
} from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import {
  auditEvents,
  taskWithStatus,
  waitForApprovalCard,
  waitForEscalationCard,
} from "../support/observe.ts";
import {
  escalationScript,
  finishedTask,
  missApprovalDeadline,
  missEscalationDeadline,
  orderReturnScript,
  toolCallsOf,
} from "../support/scripts-humans.ts";
import { blockActionsPayload, viewSubmissionPayload } from "../support/slack-signing.ts";
import { runBaton } from "../support/slash-command.ts";

// The story `/baton audit` tells of the paths off the happy one: each step in words, and true.

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** Every entry is told in words: none is its kind followed by its raw data. */
function assertAllInWords(entries: AuditEntry[]) {
  for (const e of entries)
    assert.ok(!e.text.startsWith(`${e.kind}: {`), `${e.kind} is shown raw: ${e.text}`);
}

const line = (entries: AuditEntry[], kind: string) =>
  entries.filter((e) => e.kind === kind).map((e) => `${e.actor} ${e.text}`);

function withLaneFallback(fallback: string[] | undefined) {
  return fallback
    ? agentsFileWith([
        SUPPORT_LANE,
        `${SUPPORT_LANE}      fallback:\n        users: [${fallback.join(", ")}]\n`,
      ])
    : agentsFileWith();
}

/** An escalation to the support lane, its respond-by passed, and the deadline sweep run. */
async function unansweredEscalation(fallback?: string[]) {
  h = await startHarness({
    script: scriptByAgent(escalationScript()),
    agentsFile: await withLaneFallback(fallback),
  });
  const harness = h;
  const { ts } = await harness.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(harness);
  await missEscalationDeadline(harness.db.db, escalation.id);
  await enforceDeadlines(harness.baton.deps);
  return { harness, ts, escalation };
}

test("an escalation past its deadline: the reminder, the move to the fallback and a refused click are told in words", async () => {
  const { harness, ts, escalation } = await unansweredEscalation(["U0OPSMANAGER"]);
  const card = await harness.until("the fallback's card", async () =>
    harness.db.db
      .selectFrom("escalations")
      .selectAll()
      .where("id", "=", escalation.id)
      .where("card_ts", "!=", escalation.card_ts)
      .executeTakeFirst(),
  );
  await harness.clickCard("U0SOMEONE", ESCALATION_TAKE_OVER, card, ts);
  await harness.until("the refused click to be audited", async () =>
    harness.db.db
      .selectFrom("audit_events")
      .select("id")
      .where("kind", "=", "escalation_refused")
      .executeTakeFirst(),
  );
  const { entries } = await auditStory(harness.baton.deps, "1077");
  assertAllInWords(entries);
  assert.match(line(entries, "escalation_reassigned").join("\n"), /U0OPSMANAGER/);
  assert.match(line(entries, "escalation_refused").join("\n"), /^human:U0SOMEONE .*U0OPSMANAGER/);
});

test("an escalation past its deadline with no fallback: the reminder is told in words", async () => {
  const { harness } = await unansweredEscalation();
  await harness.until("the reminder to be audited", async () =>
    harness.db.db
      .selectFrom("audit_events")
      .select("id")
      .where("kind", "=", "escalation_reminded")
      .executeTakeFirst(),
  );
  const { entries } = await auditStory(harness.baton.deps, "1077");
  assertAllInWords(entries);
  assert.match(line(entries, "escalation_reminded").join("\n"), /C0SUPPORT/);
});

test("an approval handed to its fallback and rejected there: told in words, and the refund not 'allowed' by the person who refused it", async () => {
  h = await startHarness({ script: scriptByAgent(orderReturnScript()) });
  const harness = h;
  const { ts } = await harness.mention("I'd like to return order 1077, please refund me");
  const parked = await waitForApprovalCard(harness, "the refund to wait");
  await missApprovalDeadline(harness.db.db, parked.id);
  await enforceDeadlines(harness.baton.deps);
  const moved = await harness.db.db
    .selectFrom("approvals")
    .selectAll()
    .where("id", "=", parked.id)
    .executeTakeFirstOrThrow();
  await harness.clickCard("U0LEE", APPROVAL_APPROVE, moved, ts);
  await harness.click(
    blockActionsPayload({
      userId: "U0OPSMANAGER",
      actionId: APPROVAL_REJECT,
      value: moved.id,
      channel: CHANNEL,
      messageTs: moved.card_ts ?? "",
      threadTs: ts,
    }),
  );
  const opened = await harness.slack.waitForCall("views.open");
  const view = opened.args.view as { private_metadata: string };
  await harness.click(
    viewSubmissionPayload({
      userId: "U0OPSMANAGER",
      callbackId: REJECT_REASON_CALLBACK,
      privateMetadata: view.private_metadata,
      values: { [REJECT_REASON_BLOCK]: { [REJECT_REASON_ACTION]: "Not eligible" } },
    }),
  );
  const task = await harness.until("the task to finish", () => finishedTask(harness.db.db, ts));

  const { entries } = await auditStory(harness.baton.deps, "1077");
  assertAllInWords(entries);
  assert.match(line(entries, "approval_escalated").join("\n"), /U0OPSMANAGER/);
  const [refund, ...more] = entries.filter(
    (e) => e.kind === "tool_call" && e.text.startsWith("issue_refund("),
  );
  assert.equal(more.length, 0);
  assert.match(refund?.text ?? "", /→ rejected/);
  assert.doesNotMatch(refund?.text ?? "", /allowed by/, "a rejected call was allowed by nobody");
  assert.match(refund?.text ?? "", /human:U0OPSMANAGER/, "the story names who rejected it");
  const [call] = await toolCallsOf(harness.db.db, task.id, "issue_refund");
  assert.equal(call?.status, "rejected");
  assert.equal(call?.allowed_by, null, "the ledger says nobody allowed it");

  const who = await runBaton(harness, "who 1077 issue_refund", { user: "U0OPSMANAGER" });
  assert.match(who.text, /`issue_refund` \(.*\): not run, rejected by <@U0OPSMANAGER> <!date\^/);
});

test("a reply that reopens an answered task is told, with who and the agent it goes back to, by the accept and by the wake-up check", async () => {
  h = await startHarness({
    script: () => ({ content: "Order 1042 left the warehouse yesterday." }),
  });
  const harness = h;
  const { ts } = await harness.mention("where is order 1042?");
  const task = await harness.until("the answer", () => finishedTask(harness.db.db, ts));
  await harness.reply(ts, "and order 1078?", { user: "U0COLLEAGUE" });
  const reopened = () => auditEvents(harness.db.db, task.id, "task_reopened");
  await harness.until("the reopening to be audited", async () => (await reopened()).length === 1);
  await harness.until("the second answer", async () => {
    const again = await finishedTask(harness.db.db, ts);
    return again && again.step_no > task.step_no ? again : undefined;
  });
  // The reply an ending run could not see, picked up by the check after the accept's commit.
  // Handoffs before it count no more once a person has spoken, as when the accept reopens.
  await harness.db.db
    .updateTable("tasks")
    .set({ hop_count: 5 })
    .where("id", "=", task.id)
    .execute();
  await harness.db.db
    .transaction()
    .execute((tx) => insertInput(tx, { taskId: task.id, authorId: REQUESTER, text: "thanks!" }));
  await wakeIfMissed(harness.baton.deps, task.id);
  const woken = await harness.db.db
    .selectFrom("tasks")
    .select("hop_count")
    .where("id", "=", task.id)
    .executeTakeFirstOrThrow();
  assert.equal(woken.hop_count, 0, "the hop limit counts afresh");
  await harness.until("the second reopening", async () => (await reopened()).length >= 2);

  const rows = await reopened();
  assert.deepEqual(
    rows.slice(0, 2).map((r) => [r.actor_id, r.data]),
    [
      ["U0COLLEAGUE", { owner: "customer-service", owner_kind: "agent", was: "done" }],
      [REQUESTER, { owner: "customer-service", owner_kind: "agent", was: "done" }],
    ],
  );
  const { entries } = await auditStory(harness.baton.deps, task.id);
  assertAllInWords(entries);
  assert.equal(
    line(entries, "task_reopened")[0],
    "human:U0COLLEAGUE Reopened by a reply in its thread after its answer; back with agent:customer-service",
  );
});

test("a task whose job fails and is retried: each failed try is audited, its secret masked", async () => {
  const tools: ToolDefinition[] = demoTools.map((t) =>
    t.name === "lookup_order"
      ? {
          ...t,
          run: async () => {
            throw new Error("order system said 503 (key xoxb-1234-not-a-real-token)\n  at stack");
          },
        }
      : t,
  );
  h = await startHarness({
    tools,
    jobRetries: 1,
    script: () => ({ toolCalls: [{ name: "lookup_order", arguments: { order_id: "1042" } }] }),
  });
  const harness = h;
  const { ts } = await harness.mention("where is order 1042?");
  const task = await harness.until(
    "the task to be dead-lettered",
    () => taskWithStatus(harness.db.db, ts, "failed"),
    30_000,
  );
  const tries = await auditEvents(harness.db.db, task.id, "attempt_failed");
  // Its first run here, then the queue's two tries (one retry).
  assert.deepEqual(
    tries.map((r) => r.data.retried),
    [true, true, false],
  );
  for (const r of tries) {
    assert.match(String(r.data.error), /order system said 503/);
    assert.doesNotMatch(String(r.data.error), /xoxb-|stack/, "masked, first line only");
  }
  const { entries } = await auditStory(harness.baton.deps, task.id);
  assertAllInWords(entries);
  const said = line(entries, "attempt_failed");
  assert.match(said[0] ?? "", /^system Try failed, retried: .*order system said 503/);
  assert.match(said.at(-1) ?? "", /^system Try failed, no tries left: /);
  const kinds = entries.map((e) => e.kind);
  assert.ok(kinds.lastIndexOf("attempt_failed") < kinds.indexOf("task_failed"), kinds.join(" "));
});
