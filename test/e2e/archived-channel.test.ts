import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sql } from "kysely";
import { runMaintenance } from "../../src/runtime/maintenance.ts";
import { CHANNEL, type Harness, REQUESTER, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { auditKinds, directRefundScript, taskOfThread } from "../support/scripts-humans.ts";

// A channel archived while its task runs: Slack refuses every post to its thread for good.

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
    const parked = await h.until("the approval card to be refused", async () => {
      const task = await taskOfThread(h.db.db, ts);
      if (task?.status !== "waiting_human") return undefined;
      const rows = await h.db.db
        .selectFrom("slack_outbox")
        .select("status")
        .where("task_id", "=", task.id)
        .execute();
      return rows.length > 0 && rows.every((r) => r.status === "dead") ? task : undefined;
    });

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
  let h: Harness;
  before(async () => {
    h = await startHarness({
      script: scriptByAgent({
        "customer-service": [{ content: SHORT }, { content: LONG.join("\n") }, { content: OLD }],
      }),
    });
  });
  after(async () => {
    await h.close();
  });

  /** The thread's task once it is done and Slack refused everything it said. */
  const answerRefused = (ts: string) =>
    h.until("the answer to be refused", async () => {
      const task = await taskOfThread(h.db.db, ts);
      if (task?.status !== "done") return undefined;
      const rows = await h.db.db
        .selectFrom("slack_outbox")
        .select("status")
        .where("task_id", "=", task.id)
        .execute();
      return rows.length > 0 && rows.every((r) => r.status === "dead") ? task : undefined;
    });

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
});
