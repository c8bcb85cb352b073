import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { lockTask } from "../../src/db/tasks.repository.ts";
import { insertInput } from "../../src/db/turn-reads.repository.ts";
import { waitingOnLocks } from "../support/db.ts";
import {
  CHANNEL,
  type Harness,
  REQUESTER,
  SIGNING_SECRET,
  startHarness,
} from "../support/harness.ts";
import type { Script } from "../support/model-server.ts";
import { taskWithStatus } from "../support/observe.ts";
import { answerThenReply } from "../support/scripts.ts";
import { finishedTask } from "../support/scripts-humans.ts";
import { deliverEvent, messageEvent } from "../support/slack-signing.ts";

// Replies in a task's thread: reopening once, waking after a crash, arriving while the agent
// answers. One suite per former test file.

describe("replies-reopen-once", async () => {
  // Two people reply at once to a task the agent answered: one reply reopens it, the other finds it
  // open. The trail says it was reopened once, by whoever's reply reopened it.
  let h: Harness;
  before(async () => {
    h = await startHarness({ script: () => ({ content: "Order 1042 left the warehouse." }) });
  });
  after(async () => {
    await h.close();
  });

  test("two replies at once to an answered task reopen it once", async () => {
    const { ts } = await h.mention("where is order 1042?");
    const task = await h.until("the answer", async () => {
      const row = await taskWithStatus(h.db.db, ts, "done");
      return row && !row.lease_owner ? row : undefined;
    });
    // Something holds the task's row (a person's click, say) while both replies are accepted.
    let replies: Promise<unknown> | undefined;
    await h.db.db.transaction().execute(async (tx) => {
      assert.ok(await lockTask(tx, task.id));
      replies = Promise.all([
        h.reply(ts, "any news?"),
        h.reply(ts, "also, can you check 1078?", { user: "U0OTHER" }),
      ]);
      await h.until(
        "both accepts to wait on the task",
        async () => (await waitingOnLocks(h.db.db)) >= 2,
      );
    });
    await replies;
    await h.until("the task to be answered again", async () => {
      const row = await taskWithStatus(h.db.db, ts, "done");
      return row && row.step_no > task.step_no ? row : undefined;
    });
    const reopened = await h.db.db
      .selectFrom("audit_events")
      .select(["actor_id", "data"])
      .where("task_id", "=", task.id)
      .where("kind", "=", "task_reopened")
      .execute();
    assert.equal(reopened.length, 1, JSON.stringify(reopened));
  });
});

describe("reply-wake-after-crash", async () => {
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
});

describe("reply-while-answering", async () => {
  let h: Harness | undefined;
  after(async () => {
    await h?.close();
  });

  test("a reply sent while the agent writes its final answer is answered too", async () => {
    let thread = "";
    const asked: string[] = [];
    const script: Script = async (request) => {
      asked.push(JSON.stringify(request.messages));
      if (asked.length === 1) {
        // The requester adds something while the agent's first (and final) answer is on its way.
        while (!thread) await new Promise((resolve) => setTimeout(resolve, 10));
        assert.equal((await harness.reply(thread, "also: it is order 1078, not 1042")).status, 200);
        return { content: "Order 1042 left the warehouse yesterday." };
      }
      return { content: "Order 1078 ships tomorrow." };
    };
    const harness: Harness = await startHarness({ script });
    h = harness;
    thread = (await harness.mention("where is order 1042?")).ts;
    await harness.until("the reply to be answered", async () =>
      asked.length === 2 ? true : undefined,
    );
    const task = await harness.until("the task to finish again", () =>
      finishedTask(harness.db.db, thread),
    );
    assert.match(asked[1] ?? "", /order 1078, not 1042/, "the second answer read the reply");
    const unread = await harness.db.db
      .selectFrom("task_inputs")
      .select("text")
      .where("task_id", "=", task.id)
      .where("consumed_at_step", "is", null)
      .execute();
    assert.deepEqual(unread, []);
    await harness.until("both answers in the thread", async () => {
      const texts = harness.slack.callsTo("chat.postMessage").map((c) => String(c.args.text ?? ""));
      return texts.some((t) => t.includes("1042 left")) &&
        texts.some((t) => t.includes("1078 ships"))
        ? true
        : undefined;
    });
  });
});
