import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import { agentsFileWith, harnessPerTest } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForApprovalCard, waitForEscalationCard } from "../support/observe.ts";
import {
  blockTexts,
  cardWithButton,
  REFUND_ARGS,
  refundCall,
  refundsOf,
  taskOfThread,
} from "../support/scripts-humans.ts";

// The agents file's limits as the people in a thread meet them: what a stopped task leaves behind.

describe("cap-stop-after-a-write", () => {
  const startHarness = harnessPerTest();

  // Billing's refund waits for a lead; once approved it runs, and the task is then over Billing's
  // token cap. The person the task goes to must see that the refund was made, or they may make it
  // again by hand: the note Baton writes for the stop said nothing was done.
  test("a task stopped at its cap after a write tells the person who takes it what already ran", async () => {
    const h = await startHarness({
      agentsFile: agentsFileWith([
        '    icon: ":credit_card:"\n',
        '    icon: ":credit_card:"\n    caps: { tokens_per_task: 30 }\n',
      ]),
      script: scriptByAgent({ billing: [refundCall(), { content: "Refunded." }] }),
    });
    const { ts } = await h.mention("billing: refund order 1077, it came back");
    const approval = await waitForApprovalCard(h);
    await h.clickCard("U0BILLINGLEAD", APPROVAL_APPROVE, approval, ts);
    const escalation = await waitForEscalationCard(h);
    assert.equal((await refundsOf(h.db.db)).length, 1, "the approved refund ran");
    const task = await taskOfThread(h.db.db, ts);
    assert.equal(task?.owner_kind, "human", "the cap sent the task to a person");

    const done = (escalation.note as { done: string[] }).done;
    assert.equal(done.length, 1, `done: ${JSON.stringify(done)}`);
    assert.match(done[0] ?? "", /issue_refund/);
    assert.match(done[0] ?? "", new RegExp(`amount_usd=${REFUND_ARGS.amount_usd}`));
    const card = await h.until("the escalation card", async () =>
      cardWithButton(h.slack, ts, ESCALATION_TAKE_OVER),
    );
    const text = blockTexts(card).join("\n");
    assert.match(text, /\*Done:\*[\s\S]*issue_refund/);
    // Baton stopped it, not an agent unsure of its work: a confidence would mean nothing here.
    assert.doesNotMatch(text, /Confidence/);
  });
});

describe("unreadable-escalation-after-a-write", () => {
  const startHarness = harnessPerTest();

  // The note Baton writes for an agent whose own notes it could not read is no better placed to
  // leave out a refund that ran: the person it goes to must see it.
  test("the note Baton writes for an unreadable escalation lists the writes that ran", async () => {
    const bad = {
      name: "escalate_to_human",
      arguments: { summary: "The customer wants more.", reason: "Unsure", confidence: "low" },
    };
    const refund = { order_id: "1077", amount_usd: 20, reason: "Scratched on arrival" };
    const h = await startHarness({
      script: scriptByAgent({
        billing: [refundCall(refund), ...[1, 2, 3].map(() => ({ toolCalls: [bad] }))],
      }),
    });
    const { ts } = await h.mention("billing: refund 20 USD on order 1077, and more if you can");
    const escalation = await waitForEscalationCard(h);
    assert.equal((await refundsOf(h.db.db)).length, 1);
    const note = escalation.note as { reason: string; done: string[] };
    assert.match(note.reason, /its note could not be read/);
    assert.deepEqual(
      note.done.map((d) => /^issue_refund ran: .*amount_usd=20/.test(d)),
      [true],
      JSON.stringify(note.done),
    );
    const card = await h.until("the escalation card", async () =>
      cardWithButton(h.slack, ts, ESCALATION_TAKE_OVER),
    );
    assert.doesNotMatch(blockTexts(card).join("\n"), /Confidence/, "the agent stated none");
  });
});
