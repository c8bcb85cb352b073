import assert from "node:assert/strict";
import { test } from "node:test";
import { escalationCard } from "../src/slack/views/escalation-card.ts";
import { handoffCard } from "../src/slack/views/handoff-card.ts";
import { assertWithinSlackLimits } from "./support/slack-limits.ts";

// A note holds up to 10 items of 300 characters in `done` and in `unknowns` (handoffNoteSchema).
const items = (word: string) =>
  Array.from({ length: 10 }, (_, i) => `${word} ${i + 1}: ${"checked & noted ".repeat(12)}`);

/** The bullet lines of the card, each item's number as it shows. */
const shown = (blocks: unknown, word: string) =>
  [...JSON.stringify(blocks).matchAll(new RegExp(`• ${word} (\\d+):`, "g"))].map((m) => m[1]);

test("a handoff card lists every item done and unknown, each shortened, none dropped", () => {
  const card = handoffCard({
    fromName: "Fulfillment",
    toName: "Inventory",
    kind: "transfer",
    note: {
      summary: "Order 1042 cannot be picked.",
      done: items("Tried"),
      needed: "Check the count.",
      facts: {},
      unknowns: items("Unsure"),
      urgency: "normal",
    },
  });
  assertWithinSlackLimits(card);
  const all = Array.from({ length: 10 }, (_, i) => String(i + 1));
  assert.deepEqual(shown(card.blocks, "Tried"), all);
  assert.deepEqual(shown(card.blocks, "Unsure"), all);
});

test("an escalation card lists every item done, each shortened, none dropped", () => {
  const card = escalationCard({
    escalationId: "esc_1",
    fromName: "Billing",
    owner: { kind: "user", id: "U0LEE" },
    note: {
      requester: "a customer",
      summary: "A refund over the limit.",
      done: items("Tried"),
      reason: "Needs a person.",
      urgency: "high",
      confidence: 0.5,
      lane: "support",
      recommended_action: "Decide.",
      facts: {},
    },
    state: { status: "open" },
  });
  assertWithinSlackLimits(card);
  assert.deepEqual(
    shown(card.blocks, "Tried"),
    Array.from({ length: 10 }, (_, i) => String(i + 1)),
  );
});
