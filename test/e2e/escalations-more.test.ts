import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { enforceDeadlines } from "../../src/runtime/deadlines.ts";
import {
  ESCALATION_SEND_BACK,
  ESCALATION_TAKE_OVER,
} from "../../src/slack/views/escalation-card.ts";
import {
  agentsYmlWith,
  CHANNEL,
  type Harness,
  harnessPerTest,
  REQUESTER,
  SIGNING_SECRET,
  SUPPORT_LANE,
  startHarness,
} from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForEscalationCard } from "../support/observe.ts";
import {
  ESCALATION_NOTE,
  escalationScript,
  missEscalationDeadline,
  sendBackSubmission,
  taskOfThread,
} from "../support/scripts-humans.ts";
import { blockActionsPayload, deliverEvent, messageEvent } from "../support/slack-signing.ts";
import { runBaton } from "../support/slash-command.ts";

// Escalations: clicks racing, facts on the card, the hop limit, a person who asked, direct messages.
// One suite per former test file.

describe("escalation-click-race", async () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  /** agents.yml with the support lane owned by the billing leads group, falling back to U0OPSMANAGER. */
  async function agentsFile() {
    const text = agentsYmlWith([
      SUPPORT_LANE,
      "    support:\n      groups: [S0BILLINGLEADS]\n      fallback:\n        users: [U0OPSMANAGER]\n",
    ]);
    assert.ok(text.includes("S0BILLINGLEADS]\n      fallback"));
    return parseAgentsFile(text, "review.yml", new Set(demoTools.map((t) => t.name)));
  }

  // The approval flow guards this exact race (decideApproval's `checkedApprovers`); escalations do not.
  test("an owner's click still being checked when the sweep hands the escalation to its fallback decides nothing", async () => {
    h = await startHarness({
      script: scriptByAgent(escalationScript()),
      agentsFile: await agentsFile(),
    });
    const harness = h;
    const { ts } = await harness.mention(
      "the lamp from order 1077 caught fire, I want compensation",
    );
    const escalation = await waitForEscalationCard(harness);
    assert.deepEqual(escalation.owner, { kind: "group", id: "S0BILLINGLEADS" });

    // U0LEE (a billing lead) clicks; while Baton asks Slack who the billing leads are, the
    // escalation's deadline passes and the sweep hands it to the fallback, U0OPSMANAGER.
    const groupsAsked = harness.slack.holdAnswer("usergroups.users.list");
    const clicked = harness.clickCard("U0LEE", ESCALATION_TAKE_OVER, escalation, ts);
    await groupsAsked.arrived;
    await missEscalationDeadline(harness.db.db, escalation.id);
    await enforceDeadlines(harness.baton.deps);
    const moved = await harness.db.db
      .selectFrom("escalations")
      .selectAll()
      .where("id", "=", escalation.id)
      .executeTakeFirstOrThrow();
    assert.deepEqual(moved.owner, { kind: "user", id: "U0OPSMANAGER" });
    groupsAsked.release();
    await clicked;

    const row = await harness.db.db
      .selectFrom("escalations")
      .selectAll()
      .where("id", "=", escalation.id)
      .executeTakeFirstOrThrow();
    const task = await taskOfThread(harness.db.db, ts);
    assert.equal(
      row.status,
      "open",
      `still the fallback's to decide (decided by ${row.decided_by})`,
    );
    assert.equal(task?.owner_id, "U0OPSMANAGER");
    const told = harness.slack.callsTo("chat.postEphemeral").find((c) => c.args.user === "U0LEE");
    assert.match(String(told?.args.text), /U0OPSMANAGER/, "U0LEE is told who decides now");
  });
});

describe("escalation-facts", async () => {
  // The facts of an escalation's note were never merged into the task's: an agent a person sent the
  // work back to started its stint with neither the note nor the facts, so no order id.

  const LEAD = "U0SUPPORTLEAD";
  const NOTE = {
    requester: "Dana (U0REQUESTER)",
    summary: "Dana's lamp caught fire; she wants compensation.",
    done: ["Found her order by email: 1077, delivered, 149 USD"],
    reason: "Safety incident: outside what I may decide.",
    urgency: "high",
    confidence: 0.4,
    lane: "support",
    recommended_action: "Decide on compensation.",
    facts: { order_id: "1077", amount_usd: 149 },
  };
  const script = scriptByAgent({
    "customer-service": [
      { toolCalls: [{ name: "escalate_to_human", arguments: NOTE }] },
      { content: "Done." },
    ],
    billing: [{ content: "Done." }],
  });

  let h: Harness;
  before(async () => {
    h = await startHarness({ script });
  });
  after(async () => {
    await h.close();
  });

  test("an agent sent an escalation back still has the escalation's facts", async () => {
    const { ts } = await h.mention("my lamp caught fire, I want compensation");
    const escalation = await waitForEscalationCard(h);
    await h.click(
      blockActionsPayload({
        userId: LEAD,
        actionId: ESCALATION_SEND_BACK,
        value: escalation.id,
        channel: CHANNEL,
        messageTs: escalation.card_ts ?? "",
        threadTs: ts,
      }),
    );
    await h.slack.waitForCall("views.open");
    await h.click(
      sendBackSubmission({
        userId: LEAD,
        escalationId: escalation.id,
        agent: { id: "billing", name: "Billing" },
        instruction: "Refund it in full.",
      }),
    );
    await h.until("billing to be asked", async () => h.model.requestsFor("billing")[0]);
    const req = h.model.requestsFor("billing")[0];
    const text = JSON.stringify(req?.body.messages);
    const task = await taskOfThread(h.db.db, ts);
    assert.deepEqual(task?.facts, { order_id: "1077", amount_usd: 149 });
    assert.ok(
      text.includes("order_id=1077"),
      `Billing is told to refund with no order id: ${text}`,
    );
  });
});

describe("escalation-hop-limit", async () => {
  const agentsFile = parseAgentsFile(
    `
defaults:
  entry_agent: cs
  hop_limit: 2
agents:
  - id: cs
    name: Customer Service
    icon: ":speech_balloon:"
    tools: [lookup_order]
    handoffs: [fulfillment]
    instructions: Hand to fulfillment.
  - id: fulfillment
    name: Fulfillment
    icon: ":package:"
    tools: [lookup_order]
    handoffs: [cs]
    instructions: Escalate.
policies:
  lanes:
    operations:
      users: [U0OPSMANAGER]
`,
    "review-hops.yml",
    new Set(demoTools.map((t) => t.name)),
  );

  const startHarness = harnessPerTest();

  // One agent-to-agent transfer (hop 1), then an escalation (counted as hop 2). The person sends it
  // back with an instruction: the agent must get to act on it, not be stopped for "ping-pong".
  test("a task a person sends back is not failed at once by the hop limit", async () => {
    const h = await startHarness({
      agentsFile,
      script: scriptByAgent({
        cs: [
          {
            toolCalls: [
              {
                name: "transfer_to_fulfillment",
                arguments: { summary: "Order 1077 is lost.", needed: "Find it.", facts: {} },
              },
            ],
          },
        ],
        fulfillment: [
          {
            toolCalls: [
              { name: "escalate_to_human", arguments: { ...ESCALATION_NOTE, lane: "operations" } },
            ],
          },
          { content: "A replacement for order 1077 ships today." },
        ],
      }),
    });
    const { ts } = await h.mention("where is order 1077?");
    const escalation = await waitForEscalationCard(h);
    const waiting = await taskOfThread(h.db.db, ts);
    assert.equal(waiting?.status, "waiting_human");

    await h.click(
      sendBackSubmission({
        userId: "U0OPSMANAGER",
        escalationId: escalation.id,
        agent: { id: "fulfillment", name: "Fulfillment" },
        instruction: "Ship a replacement today.",
      }),
    );
    const settled = await h.until("the task to settle", async () => {
      const row = await taskOfThread(h.db.db, ts);
      return row && (row.status === "done" || row.status === "failed") ? row : undefined;
    });
    assert.equal(
      settled.status,
      "done",
      `the person's instruction is acted on, not dropped (failure: ${settled.failure_reason})`,
    );
    assert.equal(
      h.model.requestsFor("fulfillment").length,
      2,
      "Fulfillment ran on the instruction",
    );
  });
});

describe("escalation-own-request", async () => {
  const startHarness = harnessPerTest();

  // The support lane is owned by channel C0SUPPORT; the card is posted in the task's own thread
  // (C0ORDERS), where the customer who asked is. The customer must not be able to take the
  // escalation of their own compensation claim away from the support team.
  test("the requester cannot take over the escalation of their own request", async () => {
    const h = await startHarness({ script: scriptByAgent(escalationScript()) });
    const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
    const escalation = await waitForEscalationCard(h);
    assert.deepEqual(escalation.owner, { kind: "channel", id: "C0SUPPORT" });

    await h.clickCard(REQUESTER, ESCALATION_TAKE_OVER, escalation, ts);
    // Either the requester is told (refused) or the click is decided: wait for whichever comes.
    await h.until(
      "the click to be handled",
      async () =>
        h.slack.callsTo("chat.postEphemeral").some((c) => c.args.user === REQUESTER) ||
        (await h.db.db.selectFrom("escalations").select("status").executeTakeFirst())?.status !==
          "open",
    );
    const told = h.slack.callsTo("chat.postEphemeral").find((c) => c.args.user === REQUESTER);

    const row = await h.db.db
      .selectFrom("escalations")
      .selectAll()
      .where("id", "=", escalation.id)
      .executeTakeFirstOrThrow();
    const task = await taskOfThread(h.db.db, ts);
    assert.equal(row.status, "open", "the escalation is still the support team's to decide");
    assert.equal(task?.owner_id, "C0SUPPORT", "the customer does not own their own escalation");
    assert.match(String(told?.args.text), /you asked for this/i, "the requester is told why not");
  });
});

describe("escalation-closed-during-the-run", async () => {
  const startHarness = harnessPerTest();

  // Slack shows the card at once, but the run that posted it waits for Slack's answer, holding the
  // task's lease: the take-over's card update and `/baton done`'s words are left to that run.
  test("a task taken over and closed while its run still waits on Slack is told so as the run gives it up", async () => {
    const h = await startHarness({ script: scriptByAgent(escalationScript()) });
    const held = h.slack.holdAnswer("chat.postMessage", (c) => offersTakeOver(c.args));
    const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
    await held.arrived;
    const cardTs = h.slack.messages.find(offersTakeOver)?.ts;
    assert.ok(cardTs, "Slack shows the card");
    const escalation = await h.db.db
      .selectFrom("escalations")
      .selectAll()
      .executeTakeFirstOrThrow();

    // agents.yml: support is #support's, and U0SUPPORTLEAD one of its members.
    await h.clickCard(
      "U0SUPPORTLEAD",
      ESCALATION_TAKE_OVER,
      { ...escalation, card_ts: cardTs },
      ts,
    );
    await h.until("the escalation to be taken over", async () => {
      const row = await h.db.db.selectFrom("escalations").select("status").executeTakeFirst();
      return row?.status === "taken_over";
    });
    const { text } = await runBaton(h, `done ${escalation.task_id}`, {
      user: "U0SUPPORTLEAD",
      channel: "C0SUPPORT",
    });
    assert.match(text, /^Done: /);
    assert.notEqual(
      (await taskOfThread(h.db.db, ts))?.lease_owner ?? null,
      null,
      "the run holds it",
    );

    held.release();
    // No sweep runs in these tests: only the run, giving the task up, can send what was left to it.
    await h.until("the card to show the task done", async () =>
      h.slack
        .callsTo("chat.update")
        .some((c) => c.args.ts === cardTs && JSON.stringify(c.args).includes("marked done by")),
    );
    await h.until("the thread to be told", async () =>
      h.slack.messagesIn(CHANNEL, ts).some((m) => /marked this done/.test(String(m.text))),
    );
  });

  const offersTakeOver = (message: unknown) =>
    JSON.stringify(message).includes(ESCALATION_TAKE_OVER);
});

describe("direct-message", async () => {
  // The manifest keeps the Messages tab open for typing and subscribes to message.im.
  let h: Harness;
  before(async () => {
    h = await startHarness({
      script: scriptByAgent({ "customer-service": [{ content: "Order 1042 ships today." }] }),
    });
  });
  after(async () => {
    await h.close();
  });

  test("a direct message to Baton is answered, not silently dropped", async () => {
    const dm = "D0DMREQUESTER";
    const text = "where is order 1042?";
    const { ts } = h.slack.addMessage({ channel: dm, user: REQUESTER, text });
    const res = await deliverEvent(
      h.endpoint,
      SIGNING_SECRET,
      messageEvent({ user: REQUESTER, channel: dm, text, ts }),
      { eventId: "EvDM1" },
    );
    assert.equal(res.status, 200);
    const answer = await h.until("an answer in the DM", async () =>
      h.slack.callsTo("chat.postMessage").find((c) => c.args.channel === dm),
    );
    assert.match(JSON.stringify(answer.args.blocks), /Order 1042 ships today/);
  });
});
