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
import { type Script, scriptByAgent } from "../support/model-server.ts";
import { taskInThread, taskWithStatus, textOf } from "../support/observe.ts";
import { answerThenReply } from "../support/scripts.ts";
import { finishedTask } from "../support/scripts-humans.ts";
import {
  appMentionEvent,
  deliverEvent,
  messageChangedEvent,
  messageEvent,
  nextEventTs,
} from "../support/slack-signing.ts";

// Replies in a task's thread: reopening once, waking after a crash, arriving while the agent
// answers, edits. One suite per former test file.

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

describe("reply-edits", async () => {
  // A person edits a message (Slack's message_changed, one event per edit, no app_mention). In a
  // task's thread the edit is read as a reply that corrects, once per edit; Baton's own edits (its
  // cards, updated in place) are not. Outside a task, an edit that mentions Baton is told once
  // that only new messages start work.
  let h: Harness;
  before(async () => {
    h = await startHarness({ script: () => ({ content: "Order 1042 left the warehouse." }) });
  });
  after(async () => {
    await h.close();
  });

  const edit = (
    event: Parameters<typeof messageChangedEvent>[0],
    options: { eventId: string; retryNum?: number },
  ) => deliverEvent(h.endpoint, SIGNING_SECRET, messageChangedEvent(event), options);
  const inputsOf = (taskId: string) =>
    h.db.db
      .selectFrom("task_inputs")
      .select("text")
      .where("task_id", "=", taskId)
      .orderBy("id")
      .execute();
  const outcomes = async (outcome: string) =>
    (await h.baton.deps.metrics.slackEvents.get()).values.find((v) => v.labels.outcome === outcome)
      ?.value ?? 0;

  test("a person's edit in an answered task's thread reaches the agent once per edit, marked as an edit", async () => {
    const { ts } = await h.mention("where is order 1042?");
    const task = await h.until("the answer", () => finishedTask(h.db.db, ts));
    const reply = h.slack.addMessage({
      channel: CHANNEL,
      user: REQUESTER,
      text: "my other order is 1077",
      threadTs: ts,
    });
    const fields = { user: REQUESTER, channel: CHANNEL, ts: reply.ts, threadTs: ts };
    const first = {
      ...fields,
      previousText: "my other order is 1077",
      text: "my other order is 1078",
      editTs: nextEventTs(),
    };
    // Slack sends the edit, then again as its retry (the same event id).
    assert.equal((await edit(first, { eventId: "EvEdit0001" })).status, 200);
    assert.equal((await edit(first, { eventId: "EvEdit0001", retryNum: 1 })).status, 200);
    await h.until("the edit to be answered", async () => {
      const row = await taskWithStatus(h.db.db, ts, "done");
      return row && row.step_no > task.step_no ? row : undefined;
    });
    const asked = h.model.requests.at(-1)?.body.messages.map(textOf) ?? [];
    assert.ok(asked.includes("(edited) my other order is 1078"), JSON.stringify(asked));
    // A second edit of the same message is another correction: read too, once.
    const second = { ...fields, previousText: first.text, text: "my other order is 1079" };
    assert.equal((await edit(second, { eventId: "EvEdit0002" })).status, 200);
    assert.deepEqual(
      (await inputsOf(task.id)).map((i) => i.text),
      ["(edited) my other order is 1078", "(edited) my other order is 1079"],
    );
  });

  test("Baton's own edits, and changes that are no edit, are not read", async () => {
    const { ts } = await h.mention("where is order 1090?");
    const task = await h.until("the answer", () => finishedTask(h.db.db, ts));
    const [answer] = h.slack.messagesIn(CHANNEL, ts).filter((m) => m.user === "U0BATONBOT");
    assert.ok(answer, "Baton answered in the thread");
    const own = {
      user: "U0BATONBOT",
      botId: "B0BATONBOT",
      channel: CHANNEL,
      ts: answer.ts,
      threadTs: ts,
      previousText: String(answer.text),
      text: "Order 1090 left the warehouse. (updated)",
    };
    assert.equal((await edit(own, { eventId: "EvEditOwn1" })).status, 200);
    // An unfurl or a thread's reply count changes the person's message without an edit.
    const unfurl = {
      user: REQUESTER,
      channel: CHANNEL,
      ts,
      previousText: "<@U0BATONBOT> where is order 1090?",
      text: "<@U0BATONBOT> where is order 1090? see https://shop.example/1090",
      edited: false,
    };
    assert.equal((await edit(unfurl, { eventId: "EvEditUnfurl1" })).status, 200);
    // Accepting commits before Slack is answered: an input, or the task reopened, would show now.
    assert.deepEqual(await inputsOf(task.id), []);
    assert.equal((await taskWithStatus(h.db.db, ts, "done"))?.step_no, task.step_no);
  });

  test("an edit that adds a mention outside any task is told once, privately, to send it again", async () => {
    const before = await outcomes("mention_in_edit");
    const written = h.slack.addMessage({
      channel: CHANNEL,
      user: REQUESTER,
      text: "where is 1042?",
    });
    const changed = {
      user: REQUESTER,
      channel: CHANNEL,
      ts: written.ts,
      previousText: "where is 1042?",
      text: "<@U0BATONBOT> where is 1042?",
      editTs: nextEventTs(),
    };
    assert.equal((await edit(changed, { eventId: "EvEditMention1" })).status, 200);
    const told = await h.until("the person to be told", async () =>
      h.slack.ephemerals.find((e) => e.user === REQUESTER),
    );
    assert.equal(told.text, "I only see mentions in new messages. Send it again as a new message.");
    assert.equal(told.channel, CHANNEL);
    assert.equal((await edit(changed, { eventId: "EvEditMention1", retryNum: 1 })).status, 200);
    // Counted before Slack is answered: the retry was a duplicate, so nothing more is sent.
    assert.equal((await outcomes("mention_in_edit")) - before, 1);
    assert.equal(h.slack.ephemerals.filter((e) => e.user === REQUESTER).length, 1);
    assert.equal(await taskInThread(h.db.db, written.ts), undefined, "no task started");
  });
});

describe("mentions-without-work", async () => {
  // A mention with nothing after it starts nothing: the person is told, once, to write the
  // question. "@Baton fulfilment: ..." is a typo of an agent's name, read as that agent.
  let h: Harness;
  before(async () => {
    h = await startHarness({
      script: scriptByAgent({
        fulfillment: [{ content: "Order 1042 ships today." }, { content: "Billing it is." }],
        "customer-service": [
          { content: "Happy to help." },
          { content: "Happy to help." },
          { content: "Happy to help." },
        ],
      }),
    });
  });
  after(async () => {
    await h.close();
  });

  test("a mention with no question is told once, privately, what to write; no task starts", async () => {
    const empty = h.slack.addMessage({ channel: CHANNEL, user: REQUESTER, text: "<@U0BATONBOT> " });
    const fields = { user: REQUESTER, channel: CHANNEL, text: empty.text ?? "", ts: empty.ts };
    // As Slack sends it: app_mention and message at once, then app_mention again as a retry.
    const deliveries = await Promise.all([
      deliverEvent(h.endpoint, SIGNING_SECRET, appMentionEvent(fields), { eventId: "EvEmpty01" }),
      deliverEvent(h.endpoint, SIGNING_SECRET, messageEvent(fields), { eventId: "EvEmpty02" }),
    ]);
    assert.deepEqual(
      deliveries.map((d) => d.status),
      [200, 200],
    );
    const told = await h.until("the person to be told", async () =>
      h.slack.ephemerals.find((e) => e.user === REQUESTER),
    );
    assert.match(
      String(told.text),
      /^You mentioned me without a question\. Send it in a new message after @Baton \(an edit is not read as a mention\)/,
    );
    const retry = await deliverEvent(h.endpoint, SIGNING_SECRET, appMentionEvent(fields), {
      eventId: "EvEmpty01",
      retryNum: 1,
    });
    assert.equal(retry.status, 200);
    assert.equal(h.slack.ephemerals.filter((e) => e.user === REQUESTER).length, 1, "told once");
    assert.equal(await taskInThread(h.db.db, empty.ts), undefined, "no task started");
    assert.equal(h.model.requests.length, 0, "the model was not asked");
  });

  test("a reply under a direct message Baton sent starts no task, and is told where to act", async () => {
    const dm = "D0DANAREPLY";
    const page = h.slack.addMessage({
      channel: dm,
      user: "U0BATONBOT",
      text: "There is a new reply here on the task you took over.",
    });
    const reply = { user: REQUESTER, channel: dm, text: "ok, I'll take it", threadTs: page.ts };
    const asked = h.model.requests.length;
    const sent = await deliverEvent(
      h.endpoint,
      SIGNING_SECRET,
      messageEvent({ ...reply, parentUserId: "U0BATONBOT" }),
      { eventId: "EvUnderNotice1" },
    );
    assert.equal(sent.status, 200);
    const told = await h.until("the person to be told", async () =>
      h.slack.ephemerals.find((e) => e.user === REQUESTER && e.channel === dm),
    );
    assert.match(String(told.text), /^I don't read replies under my notices/);
    assert.equal(await taskInThread(h.db.db, page.ts), undefined, "no task started");
    assert.equal(h.model.requests.length, asked, "the model was not asked");
    // Their own thread in the DM is theirs to start a task in, as any direct message.
    const own = h.slack.addMessage({ channel: dm, user: REQUESTER, text: "where is 1042?" });
    await deliverEvent(
      h.endpoint,
      SIGNING_SECRET,
      messageEvent({ ...reply, text: "and 1043?", threadTs: own.ts, parentUserId: REQUESTER }),
      { eventId: "EvUnderOwn1" },
    );
    await h.until("a task in their own thread, answered", () => finishedTask(h.db.db, own.ts));
  });

  test("people talking under a channel post of Baton's (a digest) are not told anything", async () => {
    const digest = h.slack.addMessage({
      channel: CHANNEL,
      user: "U0BATONBOT",
      text: "Stale work: 3 tasks",
    });
    const chatter = { user: "U0CHATTER", channel: CHANNEL, threadTs: digest.ts };
    const sent = await deliverEvent(
      h.endpoint,
      SIGNING_SECRET,
      messageEvent({ ...chatter, text: "I'll look at the first one", parentUserId: "U0BATONBOT" }),
      { eventId: "EvUnderDigest1" },
    );
    assert.equal(sent.status, 200);
    // A DM reply after it is told at once: once it is, the channel's chatter would have been too.
    const dm = "D0CHATTER";
    const page = h.slack.addMessage({ channel: dm, user: "U0BATONBOT", text: "a page" });
    await deliverEvent(
      h.endpoint,
      SIGNING_SECRET,
      messageEvent({
        user: "U0CHATTER",
        channel: dm,
        text: "ok",
        threadTs: page.ts,
        parentUserId: "U0BATONBOT",
      }),
      { eventId: "EvUnderDigest2" },
    );
    await h.until("the DM reply to be told", async () =>
      h.slack.ephemerals.find((e) => e.user === "U0CHATTER" && e.channel === dm),
    );
    assert.deepEqual(
      h.slack.ephemerals.filter((e) => e.user === "U0CHATTER" && e.channel === CHANNEL),
      [],
      "chatter in a channel thread is not Baton's",
    );
    assert.equal(await taskInThread(h.db.db, digest.ts), undefined, "no task started");
  });

  test("a mention that only names an agent, or holds only invisible marks, is told to write the question", async () => {
    const asked = h.model.requests.length;
    for (const [i, text] of ["billing:", "Fulfillment", "Billing ,  ", "\u200b\u2060"].entries()) {
      const user = `U0NAMEONLY${i}`;
      const { ts } = await h.mention(text, { user });
      const told = await h.until(`${JSON.stringify(text)} to be told`, async () =>
        h.slack.ephemerals.find((e) => e.user === user),
      );
      assert.match(String(told.text), /^You mentioned me without a question\./);
      assert.equal(
        await taskInThread(h.db.db, ts),
        undefined,
        `no task for ${JSON.stringify(text)}`,
      );
    }
    assert.equal(h.model.requests.length, asked, "the model was not asked");
  });

  test("an agent's name typed with a typo picks that agent; a short word near none does not", async () => {
    const { ts } = await h.mention("fulfilment: where is order 1042?");
    const task = await h.until("the answer", () => finishedTask(h.db.db, ts));
    assert.equal(task.owner_id, "fulfillment");
    const handoffs = await h.db.db
      .selectFrom("handoffs")
      .select(["from_id", "to_id"])
      .where("task_id", "=", task.id)
      .execute();
    assert.deepEqual(handoffs, [{ from_id: REQUESTER, to_id: "fulfillment" }]);

    // In a task's thread a name alone may answer the agent ("billing or fulfillment?"): a reply.
    const toldBefore = h.slack.ephemerals.length;
    await h.reply(ts, "<@U0BATONBOT> billing");
    await h.until("the agent to answer the reply", async () =>
      h.slack.messagesIn(CHANNEL, ts).some((m) => m.text === "Billing it is.") ? true : undefined,
    );
    const inputs = await h.db.db
      .selectFrom("task_inputs")
      .select("text")
      .where("task_id", "=", task.id)
      .execute();
    assert.deepEqual(inputs, [{ text: "billing" }]);
    assert.equal(h.slack.ephemerals.length, toldBefore, "nobody is told to write a question");

    // A typo counts before a colon only; "bil" is not read as billing: a short word's typo is as
    // likely another word.
    const comma = await h.mention("fulfilment, where is order 1042?");
    const byComma = await h.until("the answer", () => finishedTask(h.db.db, comma.ts));
    assert.equal(byComma.owner_id, "customer-service");
    const other = await h.mention("bil: who do I ask about order 1042?");
    const asked = await h.until("the answer", () => finishedTask(h.db.db, other.ts));
    assert.equal(asked.owner_id, "customer-service");
  });
});
