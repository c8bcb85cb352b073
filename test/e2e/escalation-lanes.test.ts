import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";
import { sql } from "kysely";
import { enforceDeadlines } from "../../src/runtime/deadlines.ts";
import { runMaintenance } from "../../src/runtime/maintenance.ts";
import {
  ESCALATION_SEND_BACK,
  ESCALATION_TAKE_OVER,
} from "../../src/slack/views/escalation-card.ts";
import {
  agentsFileWith,
  CHANNEL,
  type Harness,
  harnessPerTest,
  REQUESTER,
  SIGNING_SECRET,
  SUPPORT_LANE,
  startHarness,
} from "../support/harness.ts";
import { type ScriptedToolCall, scriptByAgent } from "../support/model-server.ts";
import { postsInThread, taskWithStatus, waitForEscalationCard } from "../support/observe.ts";
import {
  auditKinds,
  blockTexts,
  buttonsOf,
  cardWithButton,
  directRefundScript,
  ESCALATION_NOTE,
  escalationScript,
  missEscalationDeadline,
  taskOfThread,
} from "../support/scripts-humans.ts";
import type { SlackCall } from "../support/slack-emulator.ts";
import { deliverEvent, messageEvent } from "../support/slack-signing.ts";
import { runBaton } from "../support/slash-command.ts";

// Escalations to lanes, unreadable notes, closing a task, a lane's fallback people, and where a
// reminder reaches the people who decide. One suite per former test file.

describe("escalation-lane-owners", async () => {
  // Who owns an escalation is what the agents file says of its lane: every person and group it
  // names, or the members of its channel. The card sits in the task's thread, which people outside
  // the lane can see and click too.

  const startHarness = harnessPerTest();

  async function escalated(h: Harness) {
    const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
    const escalation = await waitForEscalationCard(h);
    return { ts, escalation };
  }

  async function statusOf(h: Harness, id: string) {
    const row = await h.db.db
      .selectFrom("escalations")
      .select(["status", "decided_by"])
      .where("id", "=", id)
      .executeTakeFirstOrThrow();
    return row;
  }

  test("a lane owned by a channel: only its members take the work over", async () => {
    const h = await startHarness({ script: scriptByAgent(escalationScript()) });
    const { ts, escalation } = await escalated(h);
    // agents.yml: support is #support's (C0SUPPORT), whose members the emulator lists.
    assert.deepEqual(escalation.owner, { kind: "channel", id: "C0SUPPORT" });

    await h.clickCard("U0BYSTANDER", ESCALATION_TAKE_OVER, escalation, ts);
    const told = await h.until("the bystander to be told", async () =>
      h.slack.ephemerals.find((e) => e.user === "U0BYSTANDER"),
    );
    assert.match(String(told.text), /^This escalation is for the members of <#C0SUPPORT>/);
    assert.equal((await statusOf(h, escalation.id)).status, "open");

    await h.clickCard("U0SUPPORTLEAD", ESCALATION_TAKE_OVER, escalation, ts);
    const task = await h.until("the lead to hold the task", async () => {
      const row = await taskOfThread(h.db.db, ts);
      return row?.owner_id === "U0SUPPORTLEAD" ? row : undefined;
    });
    assert.equal(task.status, "waiting_human");
  });

  test("a lane that names several people and a group: any of them may act; its channel hears of it", async () => {
    const agentsFile = agentsFileWith([
      SUPPORT_LANE,
      "    support:\n      users: [U0ALICE, U0BOB]\n      groups: [S0BILLINGLEADS]\n      channel: C0SUPPORT\n",
    ]);
    const h = await startHarness({ script: scriptByAgent(escalationScript()), agentsFile });
    const { ts, escalation } = await escalated(h);
    assert.deepEqual(escalation.owner, { kind: "people", id: "U0ALICE,U0BOB,S0BILLINGLEADS" });
    const notice = await h.until("the notice in #support", async () =>
      h.slack.messagesIn("C0SUPPORT").find((m) => String(m.text).includes("needs a person")),
    );
    assert.match(String(notice.text), /^<@U0ALICE> <@U0BOB> <!subteam\^S0BILLINGLEADS> /);

    await h.clickCard("U0BYSTANDER", ESCALATION_TAKE_OVER, escalation, ts);
    const told = await h.until("the bystander to be told", async () =>
      h.slack.ephemerals.find((e) => e.user === "U0BYSTANDER"),
    );
    assert.match(
      String(told.text),
      /^This escalation is for <@U0ALICE>, <@U0BOB>, <!subteam\^S0BILLINGLEADS>; only they/,
    );
    // The second person named, not only the first.
    await h.clickCard("U0BOB", ESCALATION_TAKE_OVER, escalation, ts);
    await h.until("Bob to hold the task", async () => {
      const row = await taskOfThread(h.db.db, ts);
      return row?.owner_id === "U0BOB" ? row : undefined;
    });
    assert.deepEqual(await statusOf(h, escalation.id), {
      status: "taken_over",
      decided_by: "U0BOB",
    });
  });
});

describe("escalation-unreadable-note", async () => {
  const startHarness = harnessPerTest();

  // A note Baton refuses: no requester, no recommended action, confidence in words.
  const badEscalation = (lane: string): ScriptedToolCall => ({
    name: "escalate_to_human",
    arguments: { summary: "The lamp caught fire.", reason: "Safety", confidence: "low", lane },
  });

  /** Customer Service asks for a person three times with notes Baton cannot read. */
  async function threeRefusedEscalations(lanes: [string, string, string]) {
    const h = await startHarness({
      script: scriptByAgent({
        "customer-service": lanes.map((lane) => ({ toolCalls: [badEscalation(lane)] })),
      }),
    });
    const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
    const task = await h.until("the task to stop or wait on a person", () =>
      taskWithStatus(h.db.db, ts, "waiting_human", "failed", "done"),
    );
    return { h, ts, task };
  }

  test("an agent that asks for a person three times with unreadable notes gets one, in its lane", async () => {
    const { h, ts, task } = await threeRefusedEscalations(["support", "nowhere", "operations"]);
    assert.equal(task.status, "waiting_human", task.failure_reason ?? "");
    const escalation = await h.db.db
      .selectFrom("escalations")
      .selectAll()
      .where("task_id", "=", task.id)
      .executeTakeFirstOrThrow();
    // The lane the model named last, when it is one: agents.yml gives operations to U0OPSMANAGER.
    assert.deepEqual(escalation.owner, { kind: "user", id: "U0OPSMANAGER" });
    const note = escalation.note as Record<string, unknown>;
    assert.equal(note.reason, "the agent asked for a person but its note could not be read");
    assert.equal(note.summary, task.title);
    assert.equal(note.lane, "operations");
    assert.equal(note.requester, "<@U0REQUESTER>");

    const card = await h.until("the escalation card", async () =>
      cardWithButton(h.slack, ts, ESCALATION_TAKE_OVER),
    );
    assert.match(blockTexts(card).join("\n"), /its note could not be read/);
    const texts = postsInThread(h.slack, ts).map((p) => String(p.args.text));
    assert.ok(
      !texts.some((t) => /failed/i.test(t)),
      `no failure in the thread: ${texts.join(" | ")}`,
    );
  });

  test("with no lane it can use, the escalation goes to the owner-escalation lane", async () => {
    const { h, task } = await threeRefusedEscalations(["support", "support", "nowhere"]);
    assert.equal(task.status, "waiting_human", task.failure_reason ?? "");
    const escalation = await h.db.db
      .selectFrom("escalations")
      .selectAll()
      .where("task_id", "=", task.id)
      .executeTakeFirstOrThrow();
    assert.deepEqual(escalation.owner, { kind: "user", id: "U0OWNER" });
    assert.equal((escalation.note as { lane?: unknown }).lane, "owner_escalation");
  });
});

describe("close-task", async () => {
  // A person who took escalated work over finishes it outside Baton, then closes the task, so it
  // stops showing as their open work in App Home and in the daily digest.

  const startHarness = harnessPerTest();

  const SUPPORT_LEAD = "U0SUPPORTLEAD";

  /**
   * The text of Baton's answer to `/baton <text>` typed by `user`, by default in the support lane's
   * channel, which owns the escalated task (and so may read it) from its escalation on.
   */
  const said = async (h: Harness, user: string, text: string, channel = "C0SUPPORT") =>
    (await runBaton(h, text, { user, channel })).text;

  test("/baton done closes a task its owner took over; anyone else is refused and told why", async () => {
    const h = await startHarness({ script: scriptByAgent(escalationScript()) });
    const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
    const escalation = await waitForEscalationCard(h);
    const task = await taskOfThread(h.db.db, ts);
    assert.ok(task);

    assert.match(
      await said(h, SUPPORT_LEAD, `done ${task.id}`),
      /waits on its escalation card: take it over/,
    );
    await h.clickCard(SUPPORT_LEAD, ESCALATION_TAKE_OVER, escalation, ts);
    await h.until("the lead to own the task", async () =>
      (await taskOfThread(h.db.db, ts))?.owner_id === SUPPORT_LEAD ? true : undefined,
    );

    assert.match(
      await said(h, "U0OTHER", `done ${task.id}`),
      new RegExp(`That task is <@${SUPPORT_LEAD}>'s; only they can mark it done`),
    );
    assert.equal((await taskOfThread(h.db.db, ts))?.status, "waiting_human");

    assert.match(await said(h, SUPPORT_LEAD, `done ${task.id}`), /^Done: \*.*\* is closed/);
    const closed = await taskOfThread(h.db.db, ts);
    assert.equal(closed?.status, "done");
    assert.ok(closed?.closed_at);
    const notice = await h.until("the thread to be told", async () =>
      h.slack.messagesIn("C0ORDERS", ts).find((m) => String(m.text).includes("marked this done")),
    );
    assert.equal(notice.text, `<@${SUPPORT_LEAD}> ✅ marked this done.`);
    const card = await h.until("the escalation card to show it done", async () =>
      h.slack
        .callsTo("chat.update")
        .find(
          (c) => c.args.ts === escalation.card_ts && /marked done by/.test(blockTexts(c).join()),
        ),
    );
    assert.equal(buttonsOf(card).length, 0, "nothing left to hand to an agent");
    await h.clickCard(SUPPORT_LEAD, ESCALATION_SEND_BACK, escalation, ts);
    const told = await h.until("a late click to be told", async () =>
      h.slack.ephemerals.find((e) => e.user === SUPPORT_LEAD),
    );
    assert.match(String(told.text), /marked done, so there is nothing left to hand to an agent/);

    const audits = await h.db.db
      .selectFrom("audit_events")
      .select(["kind", "actor_id"])
      .where("task_id", "=", task.id)
      .where("kind", "in", ["task_closed", "close_refused"])
      .orderBy("id")
      .execute();
    assert.deepEqual(
      audits.map((a) => [a.kind, a.actor_id]),
      [
        ["close_refused", "U0OTHER"],
        ["task_closed", SUPPORT_LEAD],
      ],
    );

    assert.match(await said(h, SUPPORT_LEAD, `done ${task.id}`), /already done/);
    assert.match(await said(h, SUPPORT_LEAD, "done"), /Usage: `\/baton done/);

    // The requester's reply opens it for the lead again, and pages them.
    await h.reply(ts, "The replacement lamp flickers too.");
    const reopened = await h.until("the task to be the lead's again", async () => {
      const row = await taskOfThread(h.db.db, ts);
      return row?.status === "waiting_human" ? row : undefined;
    });
    assert.deepEqual([reopened.owner_kind, reopened.owner_id], ["human", SUPPORT_LEAD]);
    assert.equal(reopened.closed_at, null);
    const paged = await h.until("the lead to be paged in the thread", async () =>
      h.slack.messagesIn("C0ORDERS", ts).find((m) => String(m.text).includes("open again")),
    );
    assert.match(String(paged.text), new RegExp(`^<@${SUPPORT_LEAD}> There is a new reply`));
    const handOn = await h.until("the card to offer the way on again", async () =>
      h.slack
        .callsTo("chat.update")
        .filter((c) => c.args.ts === escalation.card_ts && buttonsOf(c).length > 0)
        .at(-1),
    );
    assert.deepEqual(
      buttonsOf(handOn).map((b) => b.action_id),
      [ESCALATION_SEND_BACK],
    );
    assert.equal(h.model.requests.length, 2, "no agent ran on the reply");

    // Closed again, the lead's own later word opens it again too (they may need an agent after
    // all), without paging them.
    assert.match(await said(h, SUPPORT_LEAD, `done ${task.id}`), /^Done: /);
    await h.reply(ts, "On second thought, billing should refund the lamp.", { user: SUPPORT_LEAD });
    await h.until(
      "open again",
      async () => (await taskOfThread(h.db.db, ts))?.status === "waiting_human" || undefined,
    );
    const notices = await h.until("the second notice", async () => {
      const found = h.slack
        .messagesIn("C0ORDERS", ts)
        .filter((m) => String(m.text).includes("open again"));
      return found.length === 2 ? found : undefined;
    });
    assert.match(
      String(notices[1]?.text),
      /^There is a new reply/,
      "nobody paged for their own reply",
    );
    assert.deepEqual(
      (await auditKinds(h.db.db, task.id, "task_reopened")).map((a) => a.actor_id),
      [REQUESTER, SUPPORT_LEAD],
    );
  });

  test("/baton done refuses a task an agent is working on, and says who has it", async () => {
    let release = () => {};
    const answered = new Promise<void>((resolve) => {
      release = resolve;
    });
    const h = await startHarness({
      script: async () => {
        await answered;
        return { content: "Order 1077 ships today." };
      },
    });
    const { ts } = await h.mention("where is order 1077?");
    const task = await h.until("the task", async () => taskOfThread(h.db.db, ts));
    // Asked in the task's own channel: no lane channel owns it yet, so none other may read it.
    assert.match(
      await said(h, SUPPORT_LEAD, `done ${task.id}`, CHANNEL),
      /with Customer Service, not with a person/,
    );
    release();
    await h.until("the answer", async () =>
      (await taskOfThread(h.db.db, ts))?.status === "done" ? true : undefined,
    );
  });
});

describe("escalation-fallback", async () => {
  // The support lane, with a fallback person: an escalation nobody picked up in time goes to them.

  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  /** An escalation to the support channel, past its respond-by, with `fallback` (U0OPSMANAGER). */
  async function escalationPastDue(fallback = ["U0OPSMANAGER"]) {
    const harness = await startHarness({
      script: scriptByAgent(escalationScript()),
      agentsFile: agentsFileWith([
        SUPPORT_LANE,
        `${SUPPORT_LANE}      fallback:\n        users: [${fallback.join(", ")}]\n`,
      ]),
    });
    h = harness;
    const { ts } = await harness.mention(
      "the lamp from order 1077 caught fire, I want compensation",
    );
    const escalation = await waitForEscalationCard(harness);
    await missEscalationDeadline(harness.db.db, escalation.id);
    return { harness, ts, escalation };
  }

  test("an escalation handed to its fallback pings the fallback person (a live mention)", async () => {
    const { harness, ts } = await escalationPastDue();
    await enforceDeadlines(harness.baton.deps);
    const reminder = await harness.until("the reminder", async () =>
      harness.slack
        .callsTo("chat.postMessage")
        .find((c) => c.args.thread_ts === ts && String(c.args.text).includes("Reminder")),
    );
    const said = String(reminder.args.text);
    assert.ok(said.includes("<@U0OPSMANAGER>"), `the fallback is not pinged: ${said}`);
  });

  // It went to the first of them only: the second was neither paged nor allowed to take it over.
  test("an escalation handed to a fallback of two people is theirs, either may take it", async () => {
    const { harness, ts, escalation } = await escalationPastDue(["U0OPSMANAGER", "U0OPSDEPUTY"]);
    await enforceDeadlines(harness.baton.deps);
    const reminder = await harness.until("the reminder", async () =>
      harness.slack
        .callsTo("chat.postMessage")
        .find((c) => c.args.thread_ts === ts && String(c.args.text).includes("Reminder")),
    );
    assert.match(String(reminder.args.text), /^<@U0OPSMANAGER> <@U0OPSDEPUTY> ⏰/);
    const card = await harness.until("the fallback's card", async () =>
      harness.db.db
        .selectFrom("escalations")
        .selectAll()
        .where("id", "=", escalation.id)
        .where("card_ts", "!=", escalation.card_ts)
        .executeTakeFirst(),
    );
    const click = await harness.clickCard("U0OPSDEPUTY", ESCALATION_TAKE_OVER, card, ts);
    assert.equal(click.status, 200);
    const task = await harness.until("the deputy to hold the task", async () => {
      const row = await harness.db.db.selectFrom("tasks").selectAll().executeTakeFirstOrThrow();
      return row.owner_id === "U0OPSDEPUTY" && row;
    });
    assert.equal(task.status, "waiting_human");
  });

  // The sweep hands the escalation to its fallback: the old card is updated ("reassigned") and a new
  // open card is posted. The fallback clicks the old card before Slack has taken those two writes.
  test("a decision made while the fallback's card is on its way leaves no card with live buttons", async () => {
    const { harness, ts, escalation } = await escalationPastDue();
    const updateHeld = harness.slack.holdAnswer("chat.update");
    const sweep = enforceDeadlines(harness.baton.deps);
    await updateHeld.arrived; // committed; Slack is slow to take the "reassigned" update
    await harness.clickCard("U0OPSMANAGER", ESCALATION_TAKE_OVER, escalation, ts);
    updateHeld.release();
    await sweep;

    const decided = await harness.until("the decision", async () => {
      const row = await harness.db.db
        .selectFrom("escalations")
        .selectAll()
        .executeTakeFirstOrThrow();
      return row.status === "taken_over" && row;
    });
    // Every card of this escalation, as Slack now shows it.
    await harness.until("the outbox to drain", async () => {
      const left = await harness.db.db
        .selectFrom("slack_outbox")
        .select("id")
        .where("status", "not in", ["sent", "dead"])
        .execute();
      return left.length === 0;
    });
    const live = harness.slack
      .messagesIn(CHANNEL, ts)
      .filter((m) => JSON.stringify(m).includes(ESCALATION_TAKE_OVER));
    assert.equal(decided.decided_by, "U0OPSMANAGER");
    assert.deepEqual(
      live.map((m) => m.ts),
      [],
      "a card of a decided escalation still offers its buttons",
    );
  });
});

describe("escalation-reminder-place", async () => {
  // A reminder reaches the people who decide where they decide. A lane owned by a channel is decided
  // by its members: in its channel, paged with <!here>, in the card's thread when the card is there,
  // sent to the channel too.
  // (deadlines.test.ts: the card in another channel's thread.)

  const DM = "D0DMREQUESTER";

  const startHarness = harnessPerTest();

  async function dm(h: Harness, text: string) {
    const { ts } = h.slack.addMessage({ channel: DM, user: REQUESTER, text });
    const event = messageEvent({ user: REQUESTER, channel: DM, text, ts });
    await deliverEvent(
      h.endpoint,
      SIGNING_SECRET,
      { ...event, channel_type: "im" },
      { eventId: `EvDM${ts}` },
    );
    return ts;
  }

  /** The escalation (or approval) is overdue; the sweep passes twice, as two replicas would. */
  async function overdue(h: Harness, table: "escalations" | "approvals") {
    const row = await h.until(`the ${table} card`, async () => {
      const found = await h.db.db.selectFrom(table).select(["id", "card_ts"]).executeTakeFirst();
      return found?.card_ts ? found : undefined;
    });
    if (table === "escalations")
      await h.db.db
        .updateTable("escalations")
        .set({ respond_by: sql`now() - interval '1 minute'` })
        .execute();
    else
      await h.db.db
        .updateTable("approvals")
        .set({ expires_at: sql`now() - interval '1 minute'` })
        .execute();
    await runMaintenance(h.baton.deps);
    await runMaintenance(h.baton.deps);
    return row;
  }

  /** The one reminder, once the outbox has sent it. */
  async function theReminder(h: Harness, pattern: RegExp): Promise<SlackCall> {
    const sent = () =>
      h.slack
        .callsTo("chat.postMessage")
        .filter((c) => !c.failed && pattern.test(`${c.args.text}`));
    await h.until("the reminder", async () => sent().length > 0 || undefined);
    await runMaintenance(h.baton.deps);
    assert.equal(sent().length, 1, "one reminder");
    return sent()[0] as SlackCall;
  }

  const placeOf = (c: SlackCall) => ({ channel: c.args.channel, thread_ts: c.args.thread_ts });
  const whereAndWhat = (c: SlackCall) =>
    `${c.args.channel} ${c.args.thread_ts ?? "(no thread)"}: ${c.args.text}`;

  test("a DM's escalation to a channel's lane: the reminder pages the channel in the card's thread", async () => {
    const h = await startHarness({
      script: scriptByAgent({
        "customer-service": [
          { toolCalls: [{ name: "escalate_to_human", arguments: ESCALATION_NOTE }] },
        ],
      }),
    });
    await dm(h, "the lamp from order 1077 caught fire, I want compensation");
    const card = await overdue(h, "escalations");

    const reminder = await theReminder(h, /Reminder/);
    assert.deepEqual(
      placeOf(reminder),
      { channel: "C0SUPPORT", thread_ts: card.card_ts },
      `not in the card's thread: ${whereAndWhat(reminder)}`,
    );
    assert.match(String(reminder.args.text), /^<!here> ⏰/);
    assert.equal(
      String(reminder.args.reply_broadcast),
      "true",
      "the channel sees the page, not only the thread",
    );
  });

  test("a lane the file leaves out is the task's channel's: the reminder pages it in the thread", async () => {
    const agentsFile = agentsFileWith([SUPPORT_LANE, ""]);
    const h = await startHarness({ script: scriptByAgent(escalationScript()), agentsFile });
    const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
    await overdue(h, "escalations");

    const reminder = await theReminder(h, /Reminder/);
    assert.deepEqual(
      placeOf(reminder),
      { channel: CHANNEL, thread_ts: ts },
      whereAndWhat(reminder),
    );
    assert.match(String(reminder.args.text), /^<!here> ⏰/, whereAndWhat(reminder));
    assert.equal(
      String(reminder.args.reply_broadcast),
      "true",
      "the channel sees the page, not only the thread",
    );
  });

  test("a DM's approval handed to its fallback: the fallback is paged where the card is", async () => {
    const h = await startHarness({ script: scriptByAgent(directRefundScript()) });
    await dm(h, "billing: please refund order 1077, the lamp came back");
    await overdue(h, "approvals");

    const reminder = await theReminder(h, /in time/);
    assert.equal(reminder.args.channel, "C0OPS", whereAndWhat(reminder));
    assert.match(String(reminder.args.text), /^<@U0OPSMANAGER> ⏰/);
  });
});
