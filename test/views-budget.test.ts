import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BLOCKS_TEXT_BUDGET } from "../src/slack/mrkdwn.ts";
import { approvalCard } from "../src/slack/views/approval-card.ts";
import { auditStoryBlocks } from "../src/slack/views/audit-story.ts";
import { type Block, blocksTextLength, fitTextBudget } from "../src/slack/views/blocks.ts";
import { escalationCard } from "../src/slack/views/escalation-card.ts";
import { handoffCard } from "../src/slack/views/handoff-card.ts";
import { agentReply } from "../src/slack/views/task-message.ts";
import { BLOCKS_TEXT_MAX, blocksTextChars } from "./support/slack-emulator.ts";
import { assertWithinSlackLimits, isNode } from "./support/slack-limits.ts";

// chat.postMessage refuses a message whose blocks hold more than about 12,000 characters of text
// in all (msg_blocks_too_long; slackapi/bolt-js#2509, #2867). The emulator refuses past 12,000;
// the builders keep to 10,000, counted after escaping.
const THREAD = "https://acme.slack.com/archives/C0SUPPORT/p1700000500000200";
const AT = new Date("2030-01-01T00:00:00Z");

/** Slack's limits, and the budget counted the emulator's way (every `text` string). */
function assertFits(message: { text: string; blocks: unknown[] }): number {
  assertWithinSlackLimits(message);
  const chars = blocksTextChars(message.blocks);
  assert.ok(chars <= BLOCKS_TEXT_BUDGET, `${chars} characters of block text`);
  assert.ok(BLOCKS_TEXT_BUDGET < BLOCKS_TEXT_MAX);
  return chars;
}

/** Every mrkdwn and plain text in the blocks, in order. */
function texts(blocks: unknown): string[] {
  const found: string[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (isNode(v)) {
      if ((v.type === "mrkdwn" || v.type === "plain_text") && typeof v.text === "string")
        found.push(v.text);
      else Object.values(v).forEach(walk);
    }
  };
  walk(blocks);
  return found;
}

/** No text ends in half an entity, an open `<`, or half a surrogate pair. */
function assertCleanCuts(blocks: unknown): void {
  for (const text of texts(blocks)) {
    const body = text.replace(/…$/, "");
    assert.doesNotMatch(
      body,
      /&(?:a|am|amp|l|lt|g|gt)?$/,
      `cut inside an entity: …${text.slice(-12)}`,
    );
    assert.doesNotMatch(body, /[\uD800-\uDBFF]$/, "cut inside a surrogate pair");
    assert.doesNotMatch(body, /<[^>]*$/, "cut inside a <...> token");
  }
}

const approval = (args: Record<string, unknown>) =>
  approvalCard({
    approvalId: "6f1c2b1e-1111-4222-8333-944455556666",
    agentName: "Billing",
    toolName: "issue_refund",
    args,
    reason: "why ".repeat(1000),
    requesterId: "U0DANA",
    approvers: { users: ["U0LEE"], groups: ["S0LEADS"] },
    expiresAt: AT,
    state: { status: "pending" },
  });

const buttonIds = (blocks: Block[]) =>
  blocks.flatMap((b) => (b.type === "actions" ? b.elements.map((e) => e.action_id) : []));

describe("agent reply within the message's text budget", () => {
  it("a long model answer (250 order lines, ~18,000 characters) is cut with a note", () => {
    const answer = Array.from(
      { length: 250 },
      (_, i) => `${i + 1}. Order ${1000 + i}: shipped, tracking pending, ETA 3 days (ref A&B).`,
    ).join("\n");
    const reply = agentReply({ text: answer, auditRef: THREAD });
    assertFits(reply);
    assertCleanCuts(reply.blocks);
    const all = texts(reply.blocks);
    const note = all.at(-1) ?? "";
    assert.match(note, /The answer was cut here: [\d,]+ more characters did not fit/);
    assert.ok(note.includes(`/baton audit ${THREAD}`), note);
    // Cut at a line break: the last line shown is whole.
    const shown = all.slice(0, -1).join("\n");
    assert.match(shown, /\(ref A&amp;B\)\.$/);
    assert.ok(answer.replace(/&/g, "&amp;").startsWith(shown.split("\n").slice(0, 100).join("\n")));
  });

  it("10,000 '&' (50,000 once escaped), in words or in one, never cut inside &amp;", () => {
    for (const text of ["R&D ".repeat(2500), "&".repeat(10_000), "<".repeat(10_000)]) {
      const reply = agentReply({ text });
      assertFits(reply);
      assertCleanCuts(reply.blocks);
      assert.match(texts(reply.blocks).at(-1) ?? "", /`\/baton audit` with a link to this thread/);
    }
  });

  it("a 50 KB answer of emoji, mixed & and <, and mentions: cut, safe, text alone kept whole", () => {
    for (const text of [
      "😀".repeat(25_000),
      `${"a&b<c> ".repeat(7000)}<!channel> @here`,
      "<@U123> & ".repeat(5000),
    ]) {
      const reply = agentReply({ text, auditRef: THREAD });
      assertFits(reply);
      assertCleanCuts(reply.blocks);
      assert.ok(!JSON.stringify(reply).includes("<@U123>"));
      // Should Slack refuse the blocks, the text alone carries the answer, escaped, to 40,000.
      assert.ok((reply.textOnly ?? "").length > 30_000);
      assert.ok(!(reply.textOnly ?? "").includes("<"));
    }
  });

  it("an answer that fits is shown whole, with no note", () => {
    const text = `${"Your refund & return are on their way. ".repeat(200)}`.trim();
    const reply = agentReply({ text });
    assertFits(reply);
    assert.equal(texts(reply.blocks).join(" "), text.replace(/&/g, "&amp;"));
    assert.doesNotMatch(JSON.stringify(reply.blocks), /was cut/);
  });
});

describe("cards within the message's text budget", () => {
  it("an approval card with long model-written arguments shows them shortened, buttons kept", () => {
    const args = Object.fromEntries(
      Array.from({ length: 12 }, (_, i) => [`note_${i}`, "customer explanation ".repeat(100)]),
    );
    const card = approval(args);
    assertFits(card);
    assertCleanCuts(card.blocks);
    assert.deepEqual(buttonIds(card.blocks), ["approval_approve", "approval_reject"]);
    for (let i = 0; i < 12; i++) assert.ok(JSON.stringify(card.blocks).includes(`note_${i}`));
    assert.match(JSON.stringify(card.blocks), /Approvers: <!subteam\^S0LEADS>, <@U0LEE>/);
  });

  it("hundreds of arguments, or 30 of 1,900 characters: what fits, and how many were left out", () => {
    const leftOut: number[] = [];
    for (const [count, size, name] of [
      [300, 20, ""],
      [30, 1900, ""],
      [400, 3000, ""],
      // Long names and values: fewer than 30 fit the budget.
      [30, 1900, "_&".repeat(60)],
    ] as const) {
      const args = Object.fromEntries(
        Array.from({ length: count }, (_, i) => [
          `arg_${i}${name}`,
          `${"R&D <x> ".repeat(size / 8)}`,
        ]),
      );
      const card = approval(args);
      assertFits(card);
      assertCleanCuts(card.blocks);
      assert.deepEqual(buttonIds(card.blocks), ["approval_approve", "approval_reject"]);
      const shown = card.blocks.flatMap((b) => (b.type === "section" ? (b.fields ?? []) : []));
      // Each shown value is cut to its share ("…"); the arguments past the room are counted.
      const left = /\+(\d+) more arguments not shown: arg_/.exec(JSON.stringify(card.blocks));
      assert.equal(shown.length + Number(left?.[1] ?? 0), count);
      assert.equal(left !== null, shown.length < count, "the card says how many it left out");
      assert.ok(shown.length > 0);
      leftOut.push(count - shown.length);
    }
    assert.deepEqual(leftOut.slice(0, 3), [270, 0, 370]);
    assert.ok((leftOut[3] ?? 0) > 0, "the budget, not the 30 fields, left some out");
  });

  it("a pending card's text alone says it has no buttons; a decided one's does not", () => {
    const card = approval({ order: "1077" });
    assert.match(card.textOnly ?? "", /no Approve \/ Reject buttons/);
    assert.match(card.textOnly ?? "", /<!date\^1893456000\^/);
    assert.match(card.textOnly ?? "", /<!subteam\^S0LEADS>/);
    const decided = approvalCard({
      ...{ approvalId: "a1", agentName: "B", toolName: "t", args: {}, requesterId: "U1" },
      approvers: { users: [], groups: [] },
      expiresAt: AT,
      state: { status: "approved", by: "U0LEE", at: AT },
    });
    assert.equal(decided.textOnly, decided.text);
  });

  it("handoff and escalation cards with hundreds of long facts", () => {
    const facts = Object.fromEntries(
      Array.from({ length: 300 }, (_, i) => [`fact_${i}`, "A&B <c> ".repeat(400)]),
    );
    const long = "x&y ".repeat(5000);
    const transfer = handoffCard({
      fromName: "CS",
      toName: "Billing",
      kind: "transfer",
      note: {
        summary: long,
        done: [long, long, long],
        needed: long,
        facts,
        unknowns: [long, long],
        urgency: "high",
        reason: long,
        artifact: long,
      },
    });
    const back = handoffCard({
      fromName: "Billing",
      toName: "CS",
      kind: "hand_back",
      note: { result: long, facts },
    });
    const escalation = escalationCard({
      escalationId: "esc_1",
      fromName: "CS",
      owner: { kind: "group", id: "S0LEADS" },
      note: {
        requester: long,
        summary: long,
        done: [long, long],
        reason: long,
        urgency: "urgent",
        deadline: long,
        confidence: 0.5,
        lane: "support",
        artifact: long,
        recommended_action: long,
        facts,
      },
      state: { status: "open" },
    });
    for (const card of [transfer, back, escalation]) {
      assertFits(card);
      assertCleanCuts(card.blocks);
      assert.match(JSON.stringify(card.blocks), /\+\d+ more facts: fact_/);
    }
    assert.deepEqual(buttonIds(escalation.blocks), [
      "escalation_take_over",
      "escalation_send_back",
    ]);
    assert.match(escalation.textOnly ?? "", /no "Take it over" \/ "Send back" buttons/);
  });

  it("an audit story page of 40 long entries keeps every entry, shortened", () => {
    const entries = Array.from({ length: 100 }, (_, i) => ({
      at: AT,
      actor: `Agent ${i} & co`,
      kind: "tool_call",
      text: `entry ${i}: ${"R&D <x> ".repeat(100)}`,
    }));
    const page = auditStoryBlocks(entries, { taskId: "task-1", page: 1, pageSize: 40 });
    assertFits(page);
    assertCleanCuts(page.blocks);
    for (let i = 0; i < 40; i++)
      assert.match(JSON.stringify(page.blocks), new RegExp(`entry ${i}:`));
    assert.deepEqual(buttonIds(page.blocks), ["audit_page"]);
  });
});

describe("the last pass: fitTextBudget", () => {
  it("shortens the longest texts to one length, never the short ones or inside an entity", () => {
    const blocks: Block[] = [
      { type: "section", text: { type: "mrkdwn", text: "a&amp;".repeat(1000) } },
      {
        type: "section",
        fields: Array.from({ length: 10 }, () => ({
          type: "mrkdwn" as const,
          text: "😀".repeat(900),
        })),
      },
      { type: "context", elements: [{ type: "mrkdwn", text: "<@U0LEE> decides" }] },
      {
        type: "actions",
        elements: [{ type: "button", action_id: "go", text: { type: "plain_text", text: "Go" } }],
      },
    ];
    assert.ok(blocksTextLength(blocks) > 20_000);
    const fitted = fitTextBudget(blocks, BLOCKS_TEXT_BUDGET);
    assert.ok(blocksTextLength(fitted) <= BLOCKS_TEXT_BUDGET);
    assert.equal(blocksTextChars(fitted), blocksTextLength(fitted));
    assertCleanCuts(fitted);
    assert.deepEqual(texts(fitted).slice(-2), ["<@U0LEE> decides", "Go"]);
    // The input is left as it was: builders may share blocks.
    assert.equal(texts(blocks)[0]?.length, 6000);
    assert.equal(fitTextBudget(fitted, BLOCKS_TEXT_BUDGET), fitted);
  });
});
