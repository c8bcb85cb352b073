import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { insertInput } from "../../src/db/turn-reads.repository.ts";
import {
  CHANNEL,
  type Harness,
  REQUESTER,
  SIGNING_SECRET,
  startHarness,
} from "../support/harness.ts";
import { answerThenReply } from "../support/scripts.ts";
import { finishedTask } from "../support/scripts-humans.ts";
import { deliverEvent, messageEvent } from "../support/slack-signing.ts";

// The race wakeIfMissed covers (a decision's run ends the task between a reply's read and its
// commit), and then the process dies after the accept's commit, before wakeIfMissed (and before
// Slack was acknowledged). The state: an answered task, an unread reply, the reply's event keys
// recorded. Slack retries the event: it is a duplicate, so nothing checks again; the sweep looks
// only at active tasks. The reply was never answered; a duplicate now runs the check again.
let h: Harness;
const { script, asked } = answerThenReply();
before(async () => {
  h = await startHarness({ script });
});
after(async () => {
  await h.close();
});

test("a reply committed just before a crash, whose wake-up check never ran, is answered after Slack's retry", async () => {
  const { ts } = await h.mention("where is order 1042?");
  const task = await h.until("the first answer", () => finishedTask(h.db.db, ts));
  const text = "and order 1078?";
  const reply = h.slack.addMessage({ channel: CHANNEL, user: REQUESTER, text, threadTs: ts });
  const eventId = "EvReplyCrash1";
  // What acceptMessage's transaction committed before the process died.
  await h.db.db.transaction().execute(async (tx) => {
    await tx
      .insertInto("slack_events")
      .values([
        { event_id: `event:${eventId}`, task_id: task.id },
        { event_id: `message:${CHANNEL}:${reply.ts}`, task_id: task.id },
      ])
      .execute();
    await insertInput(tx, { taskId: task.id, authorId: REQUESTER, text });
  });
  await h.restart();
  // Slack was never acknowledged: it sends the event again.
  const event = messageEvent({
    user: REQUESTER,
    channel: CHANNEL,
    text,
    ts: reply.ts,
    threadTs: ts,
  });
  const res = await deliverEvent(h.endpoint, SIGNING_SECRET, event, { eventId, retryNum: 1 });
  assert.equal(res.status, 200);
  await h.until(
    "the reply to be answered",
    async () => (asked.length === 2 ? true : undefined),
    8_000,
  );
});
