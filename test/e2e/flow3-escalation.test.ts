import assert from "node:assert/strict";
import { test } from "node:test";
import {
  ESCALATION_SEND_BACK,
  ESCALATION_TAKE_OVER,
} from "../../src/slack/views/escalation-card.ts";
import { SEND_BACK_AGENT_BLOCK, SEND_BACK_CALLBACK } from "../../src/slack/views/reject-modal.ts";
import { CHANNEL, type Harness, harnessPerTest } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForEscalationCard } from "../support/observe.ts";
import {
  blocksOf,
  blockTexts,
  buttonsOf,
  cardWithButton,
  ESCALATION_NOTE,
  escalationScript,
  fieldTexts,
  finishedTask,
  sendBackSubmission,
  taskOfThread,
} from "../support/scripts-humans.ts";
import { blockActionsPayload } from "../support/slack-signing.ts";

const startHarness = harnessPerTest();

const SUPPORT_LEAD = "U0SUPPORTLEAD";

/** Customer Service escalates a sensitive case; the card waits in the thread for a person. */
async function escalated() {
  const h = await startHarness({ script: scriptByAgent(escalationScript()) });
  const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(h, "the escalation card to be in Slack");
  const task = await taskOfThread(h.db.db, ts);
  assert.ok(task);
  assert.equal(escalation.status, "open");
  assert.equal(escalation.from_agent, "customer-service");
  assert.deepEqual(escalation.note, ESCALATION_NOTE);
  // agents.yml: the support lane names only a channel, so the channel owns it.
  assert.deepEqual(escalation.owner, { kind: "channel", id: "C0SUPPORT" });
  assert.deepEqual([task.owner_kind, task.owner_id], ["human", "C0SUPPORT"]);
  assert.equal(task.status, "waiting_human");
  assert.equal(task.urgency, "high");

  const card = cardWithButton(h.slack, ts, ESCALATION_TAKE_OVER);
  assert.ok(card, "the escalation card is in the task's thread");
  assert.equal(card.args.username, "Customer Service");
  assert.deepEqual(
    buttonsOf(card).map((b) => [b.action_id, b.value]),
    [
      [ESCALATION_TAKE_OVER, escalation.id],
      [ESCALATION_SEND_BACK, escalation.id],
    ],
  );
  // The note at a glance: who, what, why, when, confidence, lane, what to open, what next.
  const text = blockTexts(card).join("\n");
  for (const expected of [
    "Dana, customer of order 1077",
    "caught fire",
    "Safety incident",
    "high urgency",
    "by end of day",
    "40%",
    "Support",
    "Order 1077",
    "Call Dana",
    "Checked return eligibility",
    "LAMP-OAK",
    "<#C0SUPPORT>",
  ]) {
    assert.ok(text.includes(expected), `the card shows ${expected}`);
  }
  // The lane's channel hears of it too, with the thread's permalink on the workspace auth.test named.
  const permalink = `https://baton-test.slack.com/archives/${CHANNEL}/p${ts.replace(".", "")}`;
  await h.until("the support channel to be told, with a link to the thread", async () =>
    h.slack
      .callsTo("chat.postMessage")
      .find((c) => c.args.channel === "C0SUPPORT" && String(c.args.text).includes(permalink)),
  );

  const handoff = await h.db.db
    .selectFrom("handoffs")
    .selectAll()
    .where("task_id", "=", task.id)
    .where("kind", "=", "escalation")
    .executeTakeFirst();
  assert.deepEqual(
    [handoff?.from_id, handoff?.to_kind, handoff?.to_id],
    ["customer-service", "human", "C0SUPPORT"],
  );
  return { h, ts, task, escalation };
}

function cardUpdates(h: Harness, ts: string | null) {
  return h.slack
    .callsTo("chat.update")
    .filter((c) => !c.failed && c.args.channel === CHANNEL && c.args.ts === ts);
}

/** The lead sent the escalation back, and Customer Service's next request carries the instruction. */
async function assertSentBack(h: Harness, escalationId: string, instruction: string) {
  const decided = await h.db.db
    .selectFrom("escalations")
    .selectAll()
    .where("id", "=", escalationId)
    .executeTakeFirstOrThrow();
  assert.deepEqual([decided.status, decided.decided_by], ["sent_back", SUPPORT_LEAD]);
  const resumed = h.model.requestsFor("customer-service").at(-1);
  assert.ok(
    resumed?.body.messages.some(
      (m) => m.role === "user" && String(m.content).includes(instruction),
    ),
    "the instruction reaches the agent",
  );
}

test("flow 3 taken over: a person takes the escalated work and owns the task", async () => {
  const { h, ts, task, escalation } = await escalated();

  const res = await h.click(
    blockActionsPayload({
      userId: SUPPORT_LEAD,
      actionId: ESCALATION_TAKE_OVER,
      value: escalation.id,
      channel: CHANNEL,
      messageTs: escalation.card_ts ?? "",
      threadTs: ts,
    }),
  );
  assert.equal(res.status, 200);

  const owned = await h.until("the person to own the task", async () => {
    const row = await taskOfThread(h.db.db, ts);
    return row?.owner_id === SUPPORT_LEAD ? row : undefined;
  });
  assert.equal(owned.owner_kind, "human");
  const decided = await h.db.db
    .selectFrom("escalations")
    .selectAll()
    .where("id", "=", escalation.id)
    .executeTakeFirstOrThrow();
  assert.deepEqual([decided.status, decided.decided_by], ["taken_over", SUPPORT_LEAD]);

  const takeOver = await h.db.db
    .selectFrom("handoffs")
    .selectAll()
    .where("task_id", "=", task.id)
    .where("kind", "=", "take_over")
    .execute();
  assert.deepEqual(
    takeOver.map((x) => `${x.from_kind}:${x.from_id}->${x.to_kind}:${x.to_id}`),
    [`human:C0SUPPORT->human:${SUPPORT_LEAD}`],
  );

  const update = await h.until("the card to show who took it", async () =>
    cardUpdates(h, escalation.card_ts).at(-1),
  );
  assert.match(blockTexts(update).join("\n"), new RegExp(`Taken over by <@${SUPPORT_LEAD}>`));
  // Built again from the stored note (jsonb keeps no key order), it lists the facts as the first
  // card did.
  const posted = cardWithButton(h.slack, ts, ESCALATION_TAKE_OVER);
  assert.ok(posted);
  assert.deepEqual(fieldTexts(update), fieldTexts(posted));
  assert.deepEqual(
    buttonsOf(update).map((b) => [b.action_id, b.value]),
    [[ESCALATION_SEND_BACK, escalation.id]],
    "only the way on to an agent is left",
  );

  // A second click, by anyone, changes nothing and says who has it.
  await h.click(
    blockActionsPayload({
      userId: "U0OTHER",
      actionId: ESCALATION_TAKE_OVER,
      value: escalation.id,
      channel: CHANNEL,
      messageTs: escalation.card_ts ?? "",
      threadTs: ts,
    }),
  );
  const told = await h.until("the late clicker to be told", async () =>
    h.slack.ephemerals.find((e) => e.user === "U0OTHER"),
  );
  assert.match(String(told.text), new RegExp(`already handled by <@${SUPPORT_LEAD}>`));
  const after = await taskOfThread(h.db.db, ts);
  assert.equal(after?.owner_id, SUPPORT_LEAD);
  assert.equal(h.model.requestsFor("customer-service").length, 2, "no agent ran again");
});

test("flow 3 sent back: a person sends the work back with an instruction; the agent finishes", async () => {
  const { h, ts, task, escalation } = await escalated();
  const instruction =
    "Offer a replacement lamp and a full refund of 149 USD; I logged the incident.";

  await h.click(
    blockActionsPayload({
      userId: SUPPORT_LEAD,
      actionId: ESCALATION_SEND_BACK,
      value: escalation.id,
      channel: CHANNEL,
      messageTs: escalation.card_ts ?? "",
      threadTs: ts,
    }),
  );
  const opened = await h.slack.waitForCall("views.open");
  const view = opened.args.view as {
    callback_id: string;
    private_metadata: string;
    blocks: { block_id?: string; element?: { options?: { value: string }[] } }[];
  };
  assert.equal(view.callback_id, SEND_BACK_CALLBACK);
  assert.equal(view.private_metadata, escalation.id);
  const options = view.blocks.find((b) => b.block_id === SEND_BACK_AGENT_BLOCK)?.element?.options;
  assert.ok(
    options?.some((o) => o.value === "customer-service"),
    "CS can be picked",
  );

  const res = await h.click(
    sendBackSubmission({
      userId: SUPPORT_LEAD,
      escalationId: view.private_metadata,
      agent: { id: "customer-service", name: "Customer Service" },
      instruction,
    }),
  );
  assert.equal(res.status, 200);

  const done = await h.until("the task to finish and say so", () => finishedTask(h.db.db, ts));
  assert.deepEqual([done.owner_kind, done.owner_id], ["agent", "customer-service"]);

  await assertSentBack(h, escalation.id, instruction);

  const returns = await h.db.db
    .selectFrom("handoffs")
    .selectAll()
    .where("task_id", "=", task.id)
    .where("kind", "=", "human_return")
    .execute();
  assert.deepEqual(
    returns.map((x) => `${x.from_kind}:${x.from_id}->${x.to_kind}:${x.to_id}`),
    [`human:${SUPPORT_LEAD}->agent:customer-service`],
  );
  assert.deepEqual(returns[0]?.note, { instruction });

  const [update] = cardUpdates(h, escalation.card_ts);
  assert.ok(update, "the card is updated in place");
  const updated = blockTexts(update).join("\n");
  assert.match(updated, /Sent back to \*Customer Service\*/);
  assert.match(updated, /Offer a replacement lamp/);
  assert.ok(!blocksOf(update).some((b) => b.type === "actions"));

  const answer = h.slack
    .callsTo("chat.postMessage")
    .filter((c) => c.args.channel === CHANNEL && c.args.thread_ts === ts)
    .at(-1);
  assert.equal(answer?.args.username, "Customer Service");
  assert.match(String(answer?.args.text), /replacement lamp/);
});

test("flow 3 taken over, then handed to an agent: the person does their part, the agent finishes", async () => {
  const { h, ts, task, escalation } = await escalated();
  await h.clickCard(SUPPORT_LEAD, ESCALATION_TAKE_OVER, escalation, ts);
  await h.until("the lead to own the task", async () =>
    (await taskOfThread(h.db.db, ts))?.owner_id === SUPPORT_LEAD ? true : undefined,
  );

  // Only the person holding the work may hand it on.
  await h.clickCard("U0OTHER", ESCALATION_SEND_BACK, escalation, ts);
  const told = await h.until("the other person to be told", async () =>
    h.slack.ephemerals.find((e) => e.user === "U0OTHER"),
  );
  assert.equal(told.text, `<@${SUPPORT_LEAD}> took this over; only they can hand it to an agent.`);
  assert.equal(h.slack.callsTo("views.open").length, 0, "no modal for them");

  // While the lead holds it, the thread goes on: Dana, and the lead's own words to her.
  await h.reply(ts, "It also scorched the table. Please call me.");
  await h.reply(ts, "Dana, calling you now.", { user: SUPPORT_LEAD });

  await h.clickCard(SUPPORT_LEAD, ESCALATION_SEND_BACK, escalation, ts);
  const opened = await h.slack.waitForCall("views.open");
  const view = opened.args.view as { callback_id: string; private_metadata: string };
  assert.equal(view.callback_id, SEND_BACK_CALLBACK);
  const instruction = "I called Dana and logged the incident. Offer a replacement lamp.";
  await h.click(
    sendBackSubmission({
      userId: SUPPORT_LEAD,
      escalationId: view.private_metadata,
      agent: { id: "customer-service", name: "Customer Service" },
      instruction,
    }),
  );

  const done = await h.until("Customer Service to finish", () => finishedTask(h.db.db, ts));
  assert.deepEqual([done.owner_kind, done.owner_id], ["agent", "customer-service"]);
  const handoffs = await h.db.db
    .selectFrom("handoffs")
    .selectAll()
    .where("task_id", "=", task.id)
    .where("kind", "in", ["take_over", "human_return"])
    .orderBy("created_at")
    .execute();
  assert.deepEqual(
    handoffs.map((x) => `${x.kind} ${x.from_kind}:${x.from_id}->${x.to_kind}:${x.to_id}`),
    [
      `take_over human:C0SUPPORT->human:${SUPPORT_LEAD}`,
      `human_return human:${SUPPORT_LEAD}->agent:customer-service`,
    ],
  );
  await assertSentBack(h, escalation.id, instruction);
  // The agent reads the thread in the order it was written: the lead's instruction came last.
  const resumed = h.model.requestsFor("customer-service").at(-1);
  assert.deepEqual(
    resumed?.body.messages.filter((m) => m.role === "user").map((m) => String(m.content)),
    [
      "Request: the lamp from order 1077 caught fire, I want compensation",
      "It also scorched the table. Please call me.",
      `<@${SUPPORT_LEAD}> wrote: Dana, calling you now.`,
      `A person (<@${SUPPORT_LEAD}>) sent this back to you: ${instruction}`,
    ],
  );
  const update = await h.until("the card to say where the work went", async () =>
    cardUpdates(h, escalation.card_ts).find((c) => /Sent back to/.test(blockTexts(c).join("\n"))),
  );
  assert.equal(buttonsOf(update).length, 0, "no buttons once handed on");

  // The same modal submitted again (a double click) changes nothing, and says so.
  const calls = h.model.requestsFor("customer-service").length;
  await h.click(
    sendBackSubmission({
      userId: SUPPORT_LEAD,
      escalationId: view.private_metadata,
      agent: { id: "fulfillment", name: "Fulfillment" },
      instruction,
    }),
  );
  const dm = await h.until("the lead to be told nothing changed", async () =>
    h.slack.callsTo("chat.postMessage").find((c) => c.args.channel === SUPPORT_LEAD),
  );
  assert.equal(String(dm.args.text), "You already sent this back to an agent. Nothing changed.");
  assert.equal(h.model.requestsFor("customer-service").length, calls, "no agent ran again");
  assert.equal(h.model.requestsFor("fulfillment").length, 0);
});

test('flow 3 taken over, then handed on from the thread: "@Baton customer-service: …" by the person holding it', async () => {
  const { h, ts, task, escalation } = await escalated();
  await h.clickCard(SUPPORT_LEAD, ESCALATION_TAKE_OVER, escalation, ts);
  await h.until("the lead to own the task", async () =>
    (await taskOfThread(h.db.db, ts))?.owner_id === SUPPORT_LEAD ? true : undefined,
  );
  // Someone else naming an agent in the thread is only a reply: the task stays with the lead.
  await h.reply(ts, "<@U0BATONBOT> customer-service: just refund it", { user: "U0OTHER" });
  const instruction = "I called Dana and logged the incident. Offer a replacement lamp.";
  await h.reply(ts, `<@U0BATONBOT> customer-service: ${instruction}`, { user: SUPPORT_LEAD });

  const done = await h.until("Customer Service to finish", () => finishedTask(h.db.db, ts));
  assert.deepEqual([done.owner_kind, done.owner_id], ["agent", "customer-service"]);
  await assertSentBack(h, escalation.id, instruction);
  const returned = await h.db.db
    .selectFrom("handoffs")
    .select(["from_id", "to_id", "note"])
    .where("task_id", "=", task.id)
    .where("kind", "=", "human_return")
    .execute();
  assert.deepEqual(returned, [
    { from_id: SUPPORT_LEAD, to_id: "customer-service", note: { instruction } },
  ]);
  // The other person's reply reaches the agent as a reply, before the lead's instruction, which
  // came after it: the holder's word is the agent's last, not a bystander's "just refund it".
  const resumed = h.model.requestsFor("customer-service").at(-1);
  const said = (resumed?.body.messages ?? [])
    .filter((m) => m.role === "user")
    .map((m) => String(m.content));
  assert.deepEqual(said, [
    "Request: the lamp from order 1077 caught fire, I want compensation",
    "<@U0OTHER> wrote: customer-service: just refund it",
    `A person (<@${SUPPORT_LEAD}>) sent this back to you: ${instruction}`,
  ]);
  const answer = h.slack
    .callsTo("chat.postMessage")
    .filter((c) => c.args.thread_ts === ts && c.args.username === "Customer Service")
    .at(-1);
  assert.match(String(answer?.args.text), /replacement lamp/, "the agent followed the holder");
  const update = await h.until("the card to say where the work went", async () =>
    cardUpdates(h, escalation.card_ts).find((c) => /Sent back to/.test(blockTexts(c).join("\n"))),
  );
  assert.equal(buttonsOf(update).length, 0);
});

test("an escalation to a named person: someone else is refused (ephemeral, audited); the owner takes it over", async () => {
  const toOperations = escalationScript();
  const steps = toOperations["customer-service"] ?? [];
  steps[1] = {
    toolCalls: [
      { name: "escalate_to_human", arguments: { ...ESCALATION_NOTE, lane: "operations" } },
    ],
  };
  const h = await startHarness({ script: scriptByAgent(toOperations) });
  const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(h);
  // agents.yml: the operations lane names U0OPSMANAGER.
  assert.deepEqual(escalation.owner, { kind: "user", id: "U0OPSMANAGER" });
  const click = (userId: string, actionId: string) =>
    h.click(
      blockActionsPayload({
        userId,
        actionId,
        value: escalation.id,
        channel: CHANNEL,
        messageTs: escalation.card_ts ?? "",
        threadTs: ts,
      }),
    );

  await click("U0SOMEONE", ESCALATION_TAKE_OVER);
  await click("U0SOMEONE", ESCALATION_SEND_BACK);
  // The words follow Slack's acknowledgement of the click.
  const refusals = await h.until("both refusals", async () => {
    const told = h.slack.callsTo("chat.postEphemeral").filter((c) => c.args.user === "U0SOMEONE");
    return told.length === 2 ? told : undefined;
  });
  assert.match(String(refusals[0]?.args.text), /only they/);
  assert.equal(h.slack.callsTo("views.open").length, 0, "no modal for someone who may not decide");
  const refused = await h.db.db
    .selectFrom("audit_events")
    .select("kind")
    .where("kind", "=", "escalation_refused")
    .execute();
  assert.equal(refused.length, 2);
  assert.equal(
    (await h.db.db.selectFrom("escalations").select("status").executeTakeFirstOrThrow()).status,
    "open",
  );

  await click("U0OPSMANAGER", ESCALATION_TAKE_OVER);
  const task = await h.until("the owner to take it over", async () => {
    const row = await taskOfThread(h.db.db, ts);
    return row?.owner_id === "U0OPSMANAGER" ? row : undefined;
  });
  assert.equal(task.owner_kind, "human");
});

test("an instruction typed with a NUL or half an emoji sends the work back all the same: cleaned as a message's text is", async () => {
  const { h, ts, task, escalation } = await escalated();
  await h.clickCard(SUPPORT_LEAD, ESCALATION_SEND_BACK, escalation, ts);
  await h.slack.waitForCall("views.open");
  // Postgres refuses a NUL in text, and a lone surrogate in jsonb: stored as typed, the send-back
  // failed every time it was tried.
  const res = await h.click(
    sendBackSubmission({
      userId: SUPPORT_LEAD,
      escalationId: escalation.id,
      agent: { id: "customer-service", name: "Customer Service" },
      instruction: "Offer a replacement\u0000 lamp \ud83d",
    }),
  );
  assert.equal(res.status, 200);
  await h.until("the task to finish", () => finishedTask(h.db.db, ts));
  const [back] = await h.db.db
    .selectFrom("handoffs")
    .select("note")
    .where("task_id", "=", task.id)
    .where("kind", "=", "human_return")
    .execute();
  assert.deepEqual(back?.note, { instruction: "Offer a replacement lamp \ufffd" });
});
