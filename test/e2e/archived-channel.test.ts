import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
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
