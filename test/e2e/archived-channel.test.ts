import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sql } from "kysely";
import { DESCRIBE, plainWords } from "../../src/core/audit-words.ts";
import { runMaintenance } from "../../src/runtime/maintenance.ts";
import { deliverOutbox } from "../../src/runtime/outbox.ts";
import { CHANNEL, type Harness, REQUESTER, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { auditKinds, directRefundScript, taskOfThread } from "../support/scripts-humans.ts";

// A channel archived while its task runs: Slack refuses every post to its thread for good.

/** The thread's task once it has `status` and Slack refused everything it said. */
function allRefused(h: Harness, ts: string, status: string) {
  return h.until(`everything the ${status} task said to be refused`, async () => {
    const task = await taskOfThread(h.db.db, ts);
    if (task?.status !== status) return undefined;
    const rows = await h.db.db
      .selectFrom("slack_outbox")
      .select("status")
      .where("task_id", "=", task.id)
      .execute();
    return rows.length > 0 && rows.every((r) => r.status === "dead") ? task : undefined;
  });
}

describe("archived-channel", async () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ script: scriptByAgent(directRefundScript()) });
  });
  after(async () => {
    await h.close();
  });

  test("a task whose channel is archived stops, says why in the audit trail, and tells its requester by DM", async () => {
    h.slack.archiveChannel(CHANNEL);
    const { ts } = await h.mention("billing: please refund order 1077, the lamp came back");
    // The refund waits on a card Slack refused to show: nobody can ever click it.
    const parked = await allRefused(h, ts, "waiting_human");

    await runMaintenance(h.baton.deps);
    const stopped = await taskOfThread(h.db.db, ts);
    assert.equal(stopped?.status, "failed", "the task no longer waits on a card nobody sees");
    const approval = await h.db.db.selectFrom("approvals").selectAll().executeTakeFirstOrThrow();
    assert.equal(approval.status, "withdrawn");
    const [failed] = await auditKinds(h.db.db, parked.id, "task_failed");
    assert.match(JSON.stringify(failed?.data), /archived/);

    const dm = h.slack.messagesIn(h.slack.dmChannelFor(REQUESTER));
    assert.equal(dm.length, 1, "the requester is told once, where Baton can still reach them");
    assert.match(dm[0]?.text ?? "", /archived/);
    assert.doesNotMatch(dm[0]?.text ?? "", /[0-9a-f]{8}-[0-9a-f]{4}/, "no internal id");

    // Another sweep does nothing more: no second DM, no retry of the thread.
    const posts = h.slack.callsTo("chat.postMessage").length;
    await runMaintenance(h.baton.deps);
    assert.equal(h.slack.callsTo("chat.postMessage").length, posts);
  });
});

describe("archived-channel: an answer Slack refused", async () => {
  const SHORT = "Order 1042 shipped on Monday and arrives Friday.";
  const LONG = Array.from(
    { length: 300 },
    (_, i) => `${i + 1}. Order ${2000 + i} ships this week.`,
  );
  const OLD = "Order 7 was refunded last month.";
  const LEFT = "Order 88 is back in stock.";
  const WAITED = "Order 91 left the warehouse today.";
  let h: Harness;
  before(async () => {
    h = await startHarness({
      script: scriptByAgent({
        "customer-service": [
          { content: SHORT },
          { content: LONG.join("\n") },
          { content: OLD },
          { content: LEFT },
          { content: WAITED },
        ],
      }),
    });
  });
  after(async () => {
    await h.close();
  });

  /** The thread's task once it is done and Slack refused everything it said. */
  const answerRefused = (ts: string) => allRefused(h, ts, "done");

  // The task was done, its answer refused by the archived channel: the requester never saw it,
  // and nothing told them.
  test("reaches its requester by DM once, cut with where to read the rest when long; an old one does not", async () => {
    h.slack.archiveChannel(CHANNEL);
    const short = await answerRefused((await h.mention("where is order 1042?")).ts);
    const long = await answerRefused((await h.mention("list my open orders")).ts);
    const old = await answerRefused((await h.mention("and order 7?")).ts);
    // Refused two days ago: an old archive does not send people old work.
    await h.db.db
      .updateTable("slack_outbox")
      .set({ created_at: sql`now() - interval '2 days'` })
      .where("task_id", "=", old.id)
      .execute();

    await runMaintenance(h.baton.deps);
    await runMaintenance(h.baton.deps);
    const dms = h.slack.messagesIn(h.slack.dmChannelFor(REQUESTER)).map((m) => m.text ?? "");
    assert.equal(dms.length, 2, "each answer once, and none for the old one");
    const [toldShort] = dms.filter((t) => t.includes(SHORT));
    assert.match(toldShort ?? "", /archived/);
    const [toldLong = ""] = dms.filter((t) => t.includes(LONG[0] ?? ""));
    assert.ok(!toldLong.includes(LONG.at(-1) ?? ""), "a long answer is cut");
    assert.match(toldLong, /more characters.*npm run audit -- https:\/\/\S+ --format json/s);
    for (const text of dms) assert.doesNotMatch(text, /[0-9a-f]{8}-[0-9a-f]{4}/, "no internal id");

    for (const task of [short, long])
      assert.equal((await auditKinds(h.db.db, task.id, "answer_sent_by_dm")).length, 1);
    assert.equal((await auditKinds(h.db.db, old.id, "answer_sent_by_dm")).length, 0);
    assert.equal((await taskOfThread(h.db.db, short.thread_ts))?.status, "done");
  });

  /** The DMs of a task's answer: their rows' statuses, and the audit events of their fate. */
  const answerDms = async (taskId: string) => ({
    rows: (
      await h.db.db
        .selectFrom("slack_outbox")
        .select("status")
        .where("task_id", "=", taskId)
        .where("method", "=", "direct_message")
        .orderBy("id")
        .execute()
    ).map((r) => r.status),
    sent: await auditKinds(h.db.db, taskId, "answer_sent_by_dm"),
    refused: await auditKinds(h.db.db, taskId, "answer_dm_refused"),
  });

  // The audit trail said the answer was sent by DM as the DM was queued: a requester deactivated
  // since never got it, and the trail said they had.
  test("whose DM Slack refuses too is recorded as refused, not sent, and not sent again", async () => {
    const LEFT_USER = "U0LEFT";
    h.slack.setUser({ id: LEFT_USER, name: "lee-left", deleted: true });
    const task = await answerRefused((await h.mention("and order 88?", { user: LEFT_USER })).ts);

    await runMaintenance(h.baton.deps);
    await runMaintenance(h.baton.deps);
    const dms = await answerDms(task.id);
    assert.deepEqual(dms.rows, ["dead"], "one DM, refused, and none queued after it");
    assert.equal(dms.sent.length, 0, "the trail does not say it was sent");
    assert.equal(dms.refused.length, 1);
    const [refused] = dms.refused;
    assert.ok(refused);
    assert.match(
      plainWords(DESCRIBE.answer_dm_refused?.(refused.data, "baton") ?? []),
      /^Answer not sent to the requester by DM either: Slack refused conversations\.open: user_disabled \(its Slack channel was archived/,
    );
    const opened = h.slack.callsTo("conversations.open").filter((c) => c.args.users === LEFT_USER);
    assert.equal(opened.length, 1);
  });

  test("whose DM waits on Slack is recorded as sent once Slack takes it, not before", async () => {
    const BUSY_USER = "U0BUSY";
    const task = await answerRefused((await h.mention("and order 91?", { user: BUSY_USER })).ts);
    h.slack.failNext("conversations.open", { error: "internal_error" });

    await runMaintenance(h.baton.deps);
    const waiting = await answerDms(task.id);
    assert.deepEqual(waiting.rows, ["retry"]);
    assert.equal(waiting.sent.length, 0, "not sent yet");
    // The next sweep finds the DM queued: it queues no second one.
    await runMaintenance(h.baton.deps);
    assert.deepEqual((await answerDms(task.id)).rows, ["retry"]);

    await deliverOutbox(h.baton.deps);
    const sent = await answerDms(task.id);
    assert.deepEqual(sent.rows, ["sent"]);
    assert.equal(sent.sent.length, 1);
    assert.equal(sent.refused.length, 0);
    const told = h.slack.messagesIn(h.slack.dmChannelFor(BUSY_USER)).map((m) => m.text ?? "");
    assert.equal(told.length, 1);
    assert.match(told[0] ?? "", new RegExp(WAITED));
  });
});
