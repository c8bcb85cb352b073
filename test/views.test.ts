import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { DigestInput } from "../src/core/digest.ts";
import {
  BLOCKS_TEXT_BUDGET,
  clip,
  escapeMrkdwn,
  mention,
  plainText,
  slackDate,
  truncate,
} from "../src/slack/mrkdwn.ts";
import { appHome } from "../src/slack/views/app-home.ts";
import { approvalCard } from "../src/slack/views/approval-card.ts";
import { auditStoryBlocks } from "../src/slack/views/audit-story.ts";
import { DIGEST_OPEN_LINK, digestMessage } from "../src/slack/views/digest.ts";
import { escalationCard } from "../src/slack/views/escalation-card.ts";
import { handoffCard } from "../src/slack/views/handoff-card.ts";
import { rejectReasonModal, sendBackModal } from "../src/slack/views/reject-modal.ts";
import { agentReply, failureNotice } from "../src/slack/views/task-message.ts";
import { blocksTextChars } from "./support/slack-emulator.ts";
import { assertWithinSlackLimits, isNode, type Node } from "./support/slack-limits.ts";

// ---- Adversarial input ------------------------------------------------------------------------

const LONG = "x".repeat(10_000);
const NASTY = `<!channel> <!here> @everyone <https://evil.example|bank.com> &amp; <@UEVIL1> ${"😀".repeat(3000)}`;
const EVIL = [NASTY, LONG, `${"a&b<c>".repeat(2000)}`, "<!everyone>", "@here", "😀".repeat(6000)];
const evil = (i: number): string => EVIL[i % EVIL.length] ?? NASTY;
const facts = (n: number) =>
  Object.fromEntries(Array.from({ length: n }, (_, i) => [`${evil(i)}${i}`, evil(i + 1)]));
const AT = new Date("2025-03-04T10:42:00Z");

/**
 * The walker, plus: nothing the user typed survives as a mention, and a message's blocks stay
 * inside the text budget (Slack refuses about 12,000 characters in all: msg_blocks_too_long).
 */
function assertSafe(payload: unknown): void {
  assertWithinSlackLimits(payload);
  assert.ok(!JSON.stringify(payload).includes("<@UEVIL1>"), "user-typed mention survived");
  if (isNode(payload) && payload.type === undefined) {
    const chars = blocksTextChars(payload.blocks);
    assert.ok(chars <= BLOCKS_TEXT_BUDGET, `${chars} characters of block text`);
  }
}

function buttons(payload: unknown): Node[] {
  const found: Node[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (isNode(v)) {
      if (v.type === "button") found.push(v);
      Object.values(v).forEach(walk);
    }
  };
  walk(payload);
  return found;
}

describe("assertWithinSlackLimits", () => {
  const ok = { type: "section", text: { type: "mrkdwn", text: "fine" } };
  it("accepts a valid message and rejects each broken limit", () => {
    assertWithinSlackLimits({ text: "hi", blocks: [ok] });
    const button = (extra: Node) => ({
      type: "actions",
      elements: [
        { type: "button", action_id: "a", text: { type: "plain_text", text: "Go" }, ...extra },
      ],
    });
    const broken: unknown[] = [
      { text: "hi", blocks: Array(51).fill(ok) },
      { text: "<!channel>", blocks: [ok] },
      [{ type: "section", text: { type: "mrkdwn", text: "y".repeat(3001) } }],
      [{ type: "section", text: { type: "mrkdwn", text: "<https://evil.example|bank.com>" } }],
      [{ type: "section", text: { type: "mrkdwn", text: "hey @here" } }],
      [{ type: "section", fields: Array(11).fill({ type: "mrkdwn", text: "f" }) }],
      [{ type: "header", text: { type: "plain_text", text: "<@U1>" } }],
      [button({ value: "v".repeat(2001) })],
      [button({ action_id: "a".repeat(256) })],
      [{ type: "actions", elements: [button({}).elements[0], button({}).elements[0]] }],
      { type: "modal", title: { type: "plain_text", text: "t".repeat(25) }, blocks: [] },
    ];
    for (const payload of broken)
      assert.throws(() => assertWithinSlackLimits(payload), assert.AssertionError);
  });
});

describe("mrkdwn helpers", () => {
  it("escapes control characters and defuses broadcasts", () => {
    assert.equal(escapeMrkdwn("<!channel> & <@U1>"), "&lt;!channel&gt; &amp; &lt;@U1&gt;");
    assert.equal(escapeMrkdwn("&amp;"), "&amp;amp;");
    assert.notEqual(escapeMrkdwn("hi @everyone"), "hi @everyone");
    assert.equal(escapeMrkdwn("hi @everyone").replace("\u200D", ""), "hi @everyone");
    assert.equal(escapeMrkdwn("mail@here.com"), "mail@here.com".replace("@", "@\u200D"));
  });

  it("truncates without splitting surrogates, entities or tokens", () => {
    assert.equal(truncate("short", 10), "short");
    assert.equal(truncate("abcdef", 4), "abc…");
    assert.equal(truncate("a😀b", 3), "a…");
    assert.equal(clip("ab<cd", 5), "ab…");
    assert.equal(truncate(`x ${mention("U123")} y`, 8), "x…");
    for (let n = 1; n < 40; n++) {
      const out = clip("<&>😀".repeat(10), n);
      assert.ok(out.length <= n);
      assert.doesNotMatch(out, /&(?:a|am|amp|l|lt|g|gt)?…$|[\uD800-\uDBFF]…$/);
    }
  });

  it("makes one-line plain text and safe mentions and dates", () => {
    assert.equal(plainText("  a\n\nb  ", 10), "a b");
    assert.equal(mention("U0123ABC"), "<@U0123ABC>");
    assert.equal(mention("S0123"), "<!subteam^S0123>");
    assert.equal(mention("U1> <!channel"), "`U1&gt; &lt;!channel`");
    assert.equal(
      slackDate(AT),
      "<!date^1741084920^{date_short_pretty} at {time}|2025-03-04 10:42 UTC>",
    );
    assert.equal(slackDate(new Date(Number.NaN)), "an unknown time");
  });
});

describe("view builders under adversarial input", () => {
  it("handoff card: transfer and hand back", () => {
    const note = {
      summary: NASTY,
      done: EVIL,
      needed: LONG,
      facts: facts(200),
      unknowns: EVIL,
      urgency: "urgent" as const,
      confidence: 7,
      reason: LONG,
      deadline: NASTY,
      artifact: NASTY,
    };
    const card = handoffCard({ fromName: NASTY, toName: LONG, kind: "transfer", note });
    assertSafe(card);
    assert.match(JSON.stringify(card.blocks), /\*Why:\* .*\*Open first:\* /);
    assert.match(JSON.stringify(card.blocks), /more facts/);
    assert.match(JSON.stringify(card.blocks), /&lt;!channel&gt; &lt;!here&gt; @\u200Deveryone/);
    assertSafe(
      handoffCard({
        fromName: "A",
        toName: "B",
        kind: "hand_back",
        note: { result: NASTY, facts: facts(200) },
      }),
    );
  });

  it("escalation card: open and every decided state", () => {
    const note = {
      requester: NASTY,
      summary: LONG,
      done: EVIL,
      reason: NASTY,
      urgency: "high" as const,
      deadline: NASTY,
      confidence: 0.42,
      lane: "support" as const,
      artifact: NASTY,
      recommended_action: LONG,
      facts: facts(200),
    };
    const base = {
      escalationId: "esc_1",
      fromName: NASTY,
      owner: { kind: "group" as const, id: "S0BILL" },
      note,
    };
    const open = escalationCard({ ...base, state: { status: "open" } });
    assertSafe(open);
    assert.deepEqual(
      buttons(open).map((b) => [b.action_id, b.value]),
      [
        ["escalation_take_over", "esc_1"],
        ["escalation_send_back", "esc_1"],
      ],
    );
    for (const state of [
      { status: "taken_over", by: "U123", at: AT, closed: { by: "<!here>", at: AT } },
      { status: "sent_back", by: "<!channel>", at: AT, toName: NASTY, instruction: LONG },
      { status: "reassigned", to: NASTY, at: new Date(Number.NaN) },
    ] as const) {
      const card = escalationCard({ ...base, owner: { kind: "user", id: NASTY }, state });
      assertSafe(card);
      assert.equal(buttons(card).length, 0);
    }
    const taken = escalationCard({ ...base, state: { status: "taken_over", by: "U123", at: AT } });
    assertSafe(taken);
    assert.match(JSON.stringify(taken), /Taken over by <@U123> <!date\^1741084920\^/);
    // Until it is marked done, the person who took it over may hand it to an agent.
    assert.deepEqual(
      buttons(taken).map((b) => [b.action_id, b.value]),
      [["escalation_send_back", "esc_1"]],
    );
  });

  it("approval card: pending, decided, shadow", () => {
    const cyclic: Record<string, unknown> = { big: 10n };
    cyclic.self = cyclic;
    const args = { ...facts(200), nested: { deep: [NASTY] }, cyclic };
    const base = {
      approvalId: "appr_1",
      agentName: NASTY,
      toolName: NASTY,
      args,
      reason: LONG,
      requesterId: "U0REQ",
      expiresAt: AT,
      approvers: {
        users: [
          "U0LEE",
          "U0LEE",
          "U1> <!channel",
          ...Array.from({ length: 50 }, (_, i) => `W0X${i}`),
        ],
        groups: ["S0BL", "<!here>"],
      },
    };
    const pending = approvalCard({ ...base, state: { status: "pending" } });
    assertSafe(pending);
    assert.deepEqual(
      buttons(pending).map((b) => [b.action_id, b.value, b.style]),
      [
        ["approval_approve", "appr_1", "primary"],
        ["approval_reject", "appr_1", "danger"],
      ],
    );
    const who = JSON.stringify(pending.blocks).match(/Approvers: [^"]*/)?.[0] ?? "";
    assert.match(
      who,
      /^Approvers: <!subteam\^S0BL>, <@U0LEE>, <@W0X0>.* \+32 more · Requested by <@U0REQ>/,
    );
    for (const state of [
      { status: "approved", by: "U0LEE", at: AT },
      { status: "rejected", by: "U0LEE", at: AT, reason: NASTY },
      { status: "expired", at: AT },
      { status: "escalated", to: "S0BL", at: AT },
    ] as const) {
      const card = approvalCard({ ...base, state });
      assertSafe(card);
      assert.equal(buttons(card).length, 0);
    }
    const shadow = approvalCard({ ...base, shadow: true, state: { status: "pending" } });
    assertSafe(shadow);
    assert.equal(buttons(shadow).length, 0);
    assert.match(shadow.text, /^Shadow mode: /);
    assertSafe(approvalCard({ ...base, args: {}, state: { status: "pending" } }));
  });

  it("approval card: names who handed the work on and who asked in the thread, a few of each", () => {
    const card = approvalCard({
      approvalId: "appr_1",
      agentName: "Billing",
      toolName: "issue_refund",
      args: { order_id: "1077" },
      requesterId: "U0REQ",
      handedOnBy: ["U0LEAD", "U0LEAD>|<!channel"],
      askedInThread: Array.from({ length: 8 }, (_, i) => `U0T${i}`),
      approvers: { users: ["U0LEE"], groups: [] },
      expiresAt: AT,
      state: { status: "pending" },
    });
    assertSafe(card);
    const who = JSON.stringify(card.blocks).match(/Approvers: [^"]*/)?.[0] ?? "";
    assert.match(
      who,
      /· Requested by <@U0REQ> · handed on by <@U0LEAD> · asked in the thread by <@U0T0>, .*<@U0T4>, \+3 more · Expires/,
    );
  });

  it("reject and send-back modals", () => {
    const reject = rejectReasonModal({ approvalId: "appr_1", toolName: NASTY });
    assertSafe(reject);
    assert.equal(reject.callback_id, "approval_reject_reason");
    assert.equal(reject.private_metadata, "appr_1");
    const agents = Array.from({ length: 200 }, (_, i) => ({
      id: i % 7 === 0 ? LONG : `agent_${i % 150}`,
      name: evil(i),
    }));
    const sendBack = sendBackModal({ escalationId: "esc_1", agents });
    assertSafe(sendBack);
    assert.equal(sendBack.callback_id, "escalation_send_back");
    const empty = sendBackModal({ escalationId: "esc_1", agents: [] });
    assertSafe(empty);
    assert.equal(empty.submit, undefined);
  });

  it("app home, full and empty", () => {
    const n = 200;
    const home = appHome({
      userId: "U0LEE",
      openTasks: Array.from({ length: n }, (_, i) => ({
        taskId: `t${i}`,
        title: evil(i),
        ownerName: evil(i + 1),
        status: NASTY,
        updatedAt: AT,
        permalink: i % 2 ? "https://acme.slack.com/archives/C1/p1" : "javascript:alert(1)",
      })),
      waitingApprovals: Array.from({ length: n }, (_, i) => ({
        approvalId: `a${i}`,
        toolName: evil(i),
        agentName: NASTY,
        summary: LONG,
        requestedAt: AT,
      })),
      recentDecisions: Array.from({ length: n }, (_, i) => ({
        approvalId: `a${i}`,
        toolName: evil(i),
        decision: "rejected" as const,
        at: AT,
        reason: NASTY,
      })),
    });
    assertSafe(home);
    assert.ok(buttons(home).every((b) => String(b.url).startsWith("https://acme.slack.com/")));
    assertSafe(
      appHome({ userId: NASTY, openTasks: [], waitingApprovals: [], recentDecisions: [] }),
    );
  });

  it("digest: a full channel digest, an owner's, an all clear; dates from ISO strings", () => {
    const n = 200;
    const link = (i: number) =>
      i % 2 ? "https://slack.com/app_redirect?channel=C1&message_ts=1.2" : "javascript:alert(1)";
    const at = AT.toISOString();
    const full: DigestInput = {
      audience: "channel",
      asOf: at,
      staleAfterMs: 86_400_000,
      approvalStaleAfterMs: 4 * 3_600_000,
      staleTasks: Array.from({ length: n }, (_, i) => ({
        title: evil(i),
        owner: i % 2 ? { kind: "human", id: "U0ANN" } : { kind: "agent", id: "cs", name: NASTY },
        lastActivityAt: at,
        link: link(i),
      })),
      staleApprovals: Array.from({ length: n }, (_, i) => ({
        toolName: evil(i),
        agentName: NASTY,
        taskTitle: evil(i + 1),
        approverIds: i % 3 ? ["U0LEE", "S0LEADS"] : [NASTY],
        requestedAt: at,
        link: link(i),
      })),
      failedTasks: Array.from({ length: n }, (_, i) => ({
        title: evil(i),
        reason: evil(i + 2),
        failedAt: at,
        link: link(i),
      })),
      capped: { staleTasks: true },
    };
    const message = digestMessage(full);
    assertSafe(message);
    const rendered = JSON.stringify(message.blocks);
    assert.match(rendered, /Baton daily digest/);
    assert.match(rendered, /Tasks idle for more than 1 day\* \(200\+\)/);
    assert.match(rendered, /Approvals waiting more than 4 hours\* \(200\)/);
    // Each list shows the rows its share of the text budget holds, and counts the rest.
    assert.equal(rendered.match(/\+\d+ more not shown/g)?.length, 3);
    assert.match(rendered, /\*Failed tasks\* \(200\)"\}\},\{"type":"section"/);
    assert.ok(rendered.includes(slackDate(AT)), "ISO dates render as Slack dates");
    assert.ok(buttons(message).length > 0);
    assert.ok(
      buttons(message).every(
        (b) => b.action_id === DIGEST_OPEN_LINK && String(b.url).startsWith("https://slack.com/"),
      ),
    );
    assert.ok(!JSON.stringify(message).includes("javascript:"));

    const own = digestMessage({ ...full, audience: "owner", staleApprovals: [], failedTasks: [] });
    assertSafe(own);
    assert.match(JSON.stringify(own.blocks), /Your Baton digest/);

    const empty = { ...full, staleTasks: [], staleApprovals: [], failedTasks: [], capped: {} };
    assertSafe(digestMessage(empty));
    assert.match(JSON.stringify(digestMessage(empty).blocks), /All clear/);
    assert.match(digestMessage(empty).text, /all clear/);
    const unknown = digestMessage({ ...empty, asOf: "not a date" });
    assertSafe(unknown);
    assert.match(JSON.stringify(unknown.blocks), /As of an unknown time/);
  });

  it("agent reply splits long text and keeps all of one that fits the budget", () => {
    for (const text of [NASTY, LONG, "word ".repeat(40_000), "😀".repeat(100_000), ""]) {
      assertSafe(agentReply({ text }));
    }
    const paragraphs = Array.from(
      { length: 9 },
      (_, i) => `Paragraph ${i} ${"y".repeat(900)}`,
    ).join("\n\n");
    const reply = agentReply({ text: paragraphs });
    const joined = reply.blocks.map((b) => (b.type === "section" ? b.text?.text : "")).join("\n\n");
    assert.equal(joined, paragraphs);
    assertSafe(failureNotice({ reason: NASTY }));
  });

  it("agent reply: a code block split over sections is closed and opened again, its lines whole", () => {
    const rows = Array.from(
      { length: 90 },
      (_, i) =>
        `  order ${1000 + i}  shipped  2030-01-${String((i % 28) + 1).padStart(2, "0")}  1Z999AA1`,
    );
    const answer = `Here are your orders:\n\`\`\`\n${rows.join("\n")}\n\`\`\`\nAnything else?`;
    const reply = agentReply({ text: answer });
    assertSafe(reply);
    const texts = reply.blocks.map((b) => (b.type === "section" ? (b.text?.text ?? "") : ""));
    assert.ok(texts.length > 1, "the answer takes several sections");
    for (const text of texts) assert.equal((text.match(/```/g) ?? []).length % 2, 0, text);
    // Every row is there once, indented as written.
    const shown = texts.join("\n").split("\n");
    for (const row of rows) assert.equal(shown.filter((line) => line === row).length, 1, row);
    // An answer cut at the message's budget inside a code block closes it too.
    const huge = agentReply({ text: `\`\`\`\n${"x ".repeat(20_000)}` });
    assertSafe(huge);
    const last = huge.blocks.filter((b) => b.type === "section").at(-1);
    assert.match(last?.type === "section" ? (last.text?.text ?? "") : "", /\n```$/);
  });

  it("audit story pages", () => {
    const entries = Array.from({ length: 500 }, (_, i) => ({
      at: AT,
      actor: evil(i),
      kind: NASTY,
      text: evil(i + 2),
    }));
    const first = auditStoryBlocks(entries, { taskId: "task-1", page: 1, pageSize: 1000 });
    assertSafe(first);
    assert.deepEqual(
      buttons(first).map((b) => [b.action_id, b.value]),
      [["audit_page", "task-1:2"]],
    );
    assert.match(JSON.stringify(first), /Page 1 of 13/);
    const last = auditStoryBlocks(entries, { taskId: "task-1", page: 99, pageSize: 40 });
    assertSafe(last);
    assert.equal(buttons(last).length, 0);
    assertSafe(auditStoryBlocks([], { taskId: "task-1", page: Number.NaN, pageSize: 0 }));
  });
});
