import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { DigestInput } from "../src/core/digest.ts";
import type { AgentActivity } from "../src/db/agent-activity.repository.ts";
import type { RuntimeDeps } from "../src/runtime/deps.ts";
import { agentsReport } from "../src/slack/agents-report.ts";
import {
  BLOCKS_TEXT_BUDGET,
  clip,
  escapeMrkdwn,
  mention,
  plainText,
  slackDate,
  truncate,
} from "../src/slack/mrkdwn.ts";
import { ownerName } from "../src/slack/status.ts";
import { appHome } from "../src/slack/views/app-home.ts";
import { approvalCard } from "../src/slack/views/approval-card.ts";
import { auditStoryBlocks } from "../src/slack/views/audit-story.ts";
import { type Block, blocksTextLength, fitTextBudget } from "../src/slack/views/blocks.ts";
import { DIGEST_OPEN_LINK, digestMessage } from "../src/slack/views/digest.ts";
import { escalationCard } from "../src/slack/views/escalation-card.ts";
import { handoffCard } from "../src/slack/views/handoff-card.ts";
import { rejectReasonModal, sendBackModal } from "../src/slack/views/reject-modal.ts";
import { agentReply, failureNotice } from "../src/slack/views/task-message.ts";
import { closeWords, rateLimitedWords, taskStatusWords } from "../src/slack/words.ts";
import { BLOCKS_TEXT_MAX, blocksTextChars } from "./support/slack-emulator.ts";
import { assertWithinSlackLimits, isNode, type Node } from "./support/slack-limits.ts";

// What Baton writes in Slack, built without Slack: cards, notices, the agents report, mrkdwn,
// and the message's text budget. One suite per former test file.

describe("agents-report", async () => {
  const activity = (agentId: string, writes: Partial<AgentActivity["writes"]>): AgentActivity => ({
    agentId,
    modelCalls: 3,
    costUsd: 1.5,
    escalations: 0,
    writes: {
      ran: 0,
      approved: 0,
      approvedFailed: 0,
      approvedNotRun: 0,
      rejected: 0,
      expired: 0,
      waiting: 0,
      withdrawn: 0,
      cancelled: 0,
      proposed: 0,
      failed: 0,
      ...writes,
    },
  });

  describe("/baton agents", () => {
    it("says what each phase's record suggests, and no more", () => {
      const text = agentsReport(
        [
          { id: "a", name: "Shadowed", autonomy: "shadow" },
          { id: "b", name: "Trusted", autonomy: "supervised" },
          { id: "c", name: "Doubted", autonomy: "supervised" },
          { id: "d", name: "Young", autonomy: "supervised" },
          { id: "e", name: "Free", autonomy: "autonomous" },
        ],
        [
          activity("a", { proposed: 4 }),
          activity("b", { approved: 19, rejected: 1, waiting: 2 }),
          activity("c", { approved: 15, rejected: 4, expired: 1 }),
          activity("d", { approved: 5 }),
          { ...activity("e", { ran: 7, failed: 1 }), escalations: 2 },
        ],
        7,
      );
      assert.equal(
        text,
        [
          "*Your agents, the last 7 days*",
          "• *Shadowed* · shadow · 3 model calls · 1.50 USD",
          "   writes: 4 proposals, not run",
          "   → its proposals are on their threads' cards: if they were right, `autonomy: supervised` has a person approve each before it runs",
          "• *Trusted* · supervised · 3 model calls · 1.50 USD",
          "   writes: 22 writes asked a person: 19 approved, 1 rejected, 2 waiting",
          "   → people approved 95% of 20: `autonomy: autonomous` may be next, with an approval policy for what people should still see",
          "• *Doubted* · supervised · 3 model calls · 1.50 USD",
          "   writes: 20 writes asked a person: 15 approved, 4 rejected, 1 expired",
          "   → people approved 75% of 20: keep it supervised, and read why people rejected its calls (each task's `/baton audit`)",
          "• *Young* · supervised · 3 model calls · 1.50 USD",
          "   writes: 5 writes asked a person: 5 approved",
          "• *Free* · autonomous · 3 model calls · 1.50 USD · 2 escalations",
          "   writes: 7 ran on its own; 1 refused by the tool or a rate limit",
        ].join("\n"),
      );
    });

    it("counts an approved write the tool refused as approved, and a withdrawn one as asked", () => {
      const text = agentsReport(
        [{ id: "b", name: "Billing", autonomy: "supervised" }],
        [activity("b", { approved: 2, approvedFailed: 1, withdrawn: 1 })],
        1,
      );
      assert.match(
        text,
        /writes: 3 writes asked a person: 2 approved \(1 then refused by the tool\), 1 withdrawn \(the task stopped first\)/,
      );
    });

    it("says the share approved as counted, not as a float's error rounds it down", () => {
      const text = agentsReport(
        [{ id: "b", name: "Billing", autonomy: "supervised" }],
        // 58 / 100 * 100 is 57.99999999999999 in floating point.
        [activity("b", { approved: 58, rejected: 42 })],
        30,
      );
      assert.match(text, /people approved 58% of 100: keep it supervised/);
    });

    it("a team too long for one answer keeps each agent whole, and names those left out", () => {
      const agents = Array.from({ length: 14 }, (_, i) => ({
        id: `a${i}`,
        name: `Agent ${i}`,
        autonomy: "supervised" as const,
      }));
      const busy = { approved: 40, approvedFailed: 1, rejected: 2, expired: 1, waiting: 2 };
      const text = agentsReport(
        agents,
        agents.map((a) => ({ ...activity(a.id, busy), escalations: 3 })),
        30,
      );
      assert.ok(text.length <= 4_000, `${text.length} characters`);
      const shown = agents.filter((a) => text.includes(`• *${a.name}* ·`));
      assert.ok(shown.length >= 10 && shown.length < 14, `${shown.length} shown`);
      for (const a of shown)
        assert.match(text, new RegExp(`• \\*${a.name}\\* [^•]+rejected its calls \\(each task's`));
      const left = agents.slice(shown.length).map((a) => a.name);
      assert.ok(text.endsWith(`\n+${left.length} more agents not shown: ${left.join(", ")}`), text);
    });

    it("escapes an agent's name", () => {
      const text = agentsReport(
        [{ id: "x", name: "<!channel> *boss*", autonomy: "shadow" }],
        [],
        30,
      );
      assert.match(text, /• \*&lt;!channel&gt; \*boss\** · shadow · 0 model calls/);
      assert.doesNotMatch(text, /<!channel>/);
    });

    it("/baton status and done escape an agent's name as the owner", () => {
      const named = {
        agents: { get: () => ({ name: "<!channel> R&D" }) },
      } as unknown as RuntimeDeps;
      const owner = ownerName(named, "agent", "x");
      assert.equal(owner, "&lt;!channel&gt; R&amp;D");
      const done = closeWords(
        { outcome: "not_with_a_person", owner: { kind: "agent", id: "x" } },
        (o) => ownerName(named, o.kind, o.id),
        "1042",
      );
      assert.match(done, /^That task is with &lt;!channel&gt; R&amp;D, not with a person/);
      assert.equal(ownerName(named, "human", "U0LEE,S0LEADS"), "<@U0LEE>, <!subteam^S0LEADS>");
    });
  });
});

describe("broadcast-words", async () => {
  const LIVE = /@(channel|here|everyone)(?![\p{L}\p{N}_\u200D])/iu;

  describe("a cut never turns a harmless word into a broadcast", () => {
    it("clip: '@channelz' cut after '@channel' stays defused", () => {
      const out = clip(`${"x".repeat(20)}@channelzz`, 29);
      assert.doesNotMatch(out, LIVE, JSON.stringify(out));
    });

    it("an agent's answer: the notification text and the section split stay defused", () => {
      // 291 chars then "@channelzz": the 300-char fallback ends "…@channel…".
      const answer = `${"word ".repeat(58)}x@channelzz and more text after it`;
      const reply = agentReply({ text: answer });
      assertWithinSlackLimits(reply);
      assert.doesNotMatch(reply.text, LIVE, reply.text.slice(-40));
      // One long word split across sections: the first ends with "@here".
      const long = agentReply({ text: `${"y".repeat(2995)}@hereabouts` });
      assertWithinSlackLimits(long);
    });
  });
});

describe("views", async () => {
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
      const taken = escalationCard({
        ...base,
        state: { status: "taken_over", by: "U123", at: AT },
      });
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
      // Each list shows the rows its share of the text budget holds, and counts the rest: one
      // queued without its total says only how many at least.
      assert.equal(rendered.match(/\+\d+ more not shown/g)?.length, 2);
      assert.equal(rendered.match(/At least \d+ more not shown/g)?.length, 1);
      const counted = JSON.stringify(
        digestMessage({
          ...full,
          totals: {
            staleTasks: { count: 350, atLeast: false },
            failedTasks: { count: 5000, atLeast: true },
          },
        }).blocks,
      );
      assert.match(counted, /Tasks idle for more than 1 day\* \(350\)/);
      assert.match(counted, /\*Failed tasks\* \(5000\+\)/);
      assert.match(counted, /At least \d{4} more not shown/);
      assert.match(rendered, /\*Failed tasks\* \(200\)"\}\},\{"type":"section"/);
      assert.ok(rendered.includes(slackDate(AT)), "ISO dates render as Slack dates");
      assert.ok(buttons(message).length > 0);
      assert.ok(
        buttons(message).every(
          (b) => b.action_id === DIGEST_OPEN_LINK && String(b.url).startsWith("https://slack.com/"),
        ),
      );
      assert.ok(!JSON.stringify(message).includes("javascript:"));

      const own = digestMessage({
        ...full,
        audience: "owner",
        staleApprovals: [],
        failedTasks: [],
      });
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
      const joined = reply.blocks
        .map((b) => (b.type === "section" ? b.text?.text : ""))
        .join("\n\n");
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
        parts: [evil(i + 2)],
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
});

describe("views-budget", async () => {
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
      // Slack's audit story shows a few lines of an answer: the CLI's JSON holds all of it.
      assert.ok(note.includes(`npm run audit -- ${THREAD} --format json`), note);
      // Cut at a line break: the last line shown is whole.
      const shown = all.slice(0, -1).join("\n");
      assert.match(shown, /\(ref A&amp;B\)\.$/);
      assert.ok(
        answer.replace(/&/g, "&amp;").startsWith(shown.split("\n").slice(0, 100).join("\n")),
      );
    });

    it("10,000 '&' (50,000 once escaped), in words or in one, never cut inside &amp;", () => {
      for (const text of ["R&D ".repeat(2500), "&".repeat(10_000), "<".repeat(10_000)]) {
        const reply = agentReply({ text });
        assertFits(reply);
        assertCleanCuts(reply.blocks);
        assert.match(
          texts(reply.blocks).at(-1) ?? "",
          /`npm run audit -- --format json` and a link to this thread/,
        );
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
        parts: [`entry ${i}: ${"R&D <x> ".repeat(100)}`],
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
});

describe("views-words", async () => {
  // What a person reads on a card or notice: mentions rather than IDs, a next step, no stale lines.

  const AT = new Date("2025-03-04T10:42:00Z");
  const text = (payload: { blocks: unknown[] }) => JSON.stringify(payload.blocks);
  /** The fields' keys ("*key*"), in the order the card shows them. */
  const fieldKeys = (payload: { blocks: Block[] }) =>
    payload.blocks.flatMap((b) =>
      b.type === "section" ? (b.fields ?? []).map((f) => f.text.split("\n")[0]) : [],
    );

  const NOTE = {
    requester: "<@U0REQ>",
    summary: "where is order 1042?",
    done: [],
    reason: "Stopped automatically: it used 84 model tokens, over the cap.",
    urgency: "high" as const,
    confidence: 1,
    lane: "owner_escalation" as const,
    recommended_action: "Decide whether to raise the cap.",
    facts: {},
  };
  const ESCALATION = {
    escalationId: "esc_1",
    fromName: "Customer Service",
    owner: { kind: "channel" as const, id: "C0OPS" },
    note: NOTE,
    requesterId: "U0REQ",
  };

  describe("escalation card", () => {
    it("shows the requester of a note Baton wrote as a mention, not as escaped <@ID>", () => {
      const card = escalationCard({ ...ESCALATION, state: { status: "open" } });
      assertWithinSlackLimits(card);
      assert.ok(text(card).includes("*Requester*\\n<@U0REQ>"), text(card));
      assert.ok(!text(card).includes("&lt;@U0REQ&gt;"));
    });

    it("pages nobody a model's note names: only the task's requester becomes a mention", () => {
      const note = { ...NOTE, requester: "<@U0BOSS>" };
      const card = escalationCard({ ...ESCALATION, note, state: { status: "open" } });
      assert.ok(text(card).includes("&lt;@U0BOSS&gt;"));
      assert.ok(!text(card).includes("<@U0BOSS>"));
      const old = escalationCard({
        ...ESCALATION,
        requesterId: undefined,
        state: { status: "open" },
      });
      assert.ok(!text(old).includes("<@U0REQ>"), "no requester ID: the text stays escaped");
    });

    it("lists the facts in one order however the note's object was built (a stored note's keys come back sorted by length)", () => {
      const card = (facts: Record<string, string | number>) =>
        escalationCard({ ...ESCALATION, note: { ...NOTE, facts }, state: { status: "open" } });
      const written = card({ order_id: "1077", amount_usd: 149, sku: "LAMP-OAK" });
      const stored = card({ sku: "LAMP-OAK", order_id: "1077", amount_usd: 149 });
      assert.deepEqual(fieldKeys(stored), fieldKeys(written));
      assert.deepEqual(fieldKeys(written).slice(-3), ["*amount_usd*", "*order_id*", "*sku*"]);
    });

    it("lists a handoff card's facts in one order however the note's object was built", () => {
      const card = (facts: Record<string, string | number>) =>
        handoffCard({
          fromName: "Billing",
          toName: "CS",
          kind: "hand_back",
          note: { result: "r", facts },
        });
      const written = card({ order_id: "1077", refund_id: "R1", amount_usd: 149 });
      const stored = card({ order_id: "1077", amount_usd: 149, refund_id: "R1" });
      assert.deepEqual(fieldKeys(stored), fieldKeys(written));
      assert.deepEqual(fieldKeys(written), ["*amount_usd*", "*order_id*", "*refund_id*"]);
    });

    it("names every fallback it was reassigned to, not their IDs joined in a code span", () => {
      const state = { status: "reassigned" as const, to: "U0ANN,S0LEADS", at: AT };
      const card = escalationCard({ ...ESCALATION, state });
      assert.match(text(card), /Reassigned to <@U0ANN>, <!subteam\^S0LEADS> <!date/);
      assert.ok(!text(card).includes("`U0ANN,S0LEADS`"));
    });
  });

  describe("approval card", () => {
    const base = {
      approvalId: "appr_1",
      agentName: "Billing",
      toolName: "issue_refund",
      args: { order_id: "1077", amount_usd: 149 },
      requesterId: "U0REQ",
      approvers: { users: ["U0LEE"], groups: ["S0LEADS"] },
      expiresAt: AT,
    };

    it("says when it expires only while it waits", () => {
      assert.match(text(approvalCard({ ...base, state: { status: "pending" } })), /· Expires /);
      for (const state of [
        { status: "approved", by: "U0LEE", at: AT },
        { status: "rejected", by: "U0LEE", at: AT, reason: "no" },
        { status: "expired", at: AT },
        { status: "withdrawn", at: AT },
        { status: "escalated", to: "U0OPS", at: AT },
      ] as const) {
        const card = approvalCard({ ...base, state });
        assertWithinSlackLimits(card);
        assert.ok(!text(card).includes("Expires"), `${state.status}: ${text(card)}`);
      }
    });

    it("lists the arguments in the tool schema's order, the others after by name, however the object was built", () => {
      const argOrder = ["order_id", "amount_usd", "reason"];
      const card = (args: Record<string, unknown>) =>
        fieldKeys(approvalCard({ ...base, args, argOrder, state: { status: "pending" } }));
      const called = { order_id: "1077", amount_usd: 149, reason: "r", zone: "eu", note: "n" };
      const stored = { note: "n", zone: "eu", reason: "r", order_id: "1077", amount_usd: 149 };
      assert.deepEqual(card(called), [
        "*order_id*",
        "*amount_usd*",
        "*reason*",
        "*note*",
        "*zone*",
      ]);
      assert.deepEqual(card(stored), card(called));
    });

    it("names every fallback it was escalated to", () => {
      const state = { status: "escalated" as const, to: "U0OPS,U0ANN,S0LEADS", at: AT };
      const card = approvalCard({ ...base, state });
      assert.match(text(card), /Escalated to <@U0OPS>, <@U0ANN>, <!subteam\^S0LEADS> <!date/);
    });
  });

  describe("notices", () => {
    it("a failed task says what to do next and points at its history by the thread's link", () => {
      const link = "https://acme.slack.com/archives/C1/p1700000000000100";
      const notice = failureNotice({ reason: "it was handed on 5 times", auditRef: link });
      assertWithinSlackLimits(notice);
      assert.match(text(notice), /Reply in this thread to have Baton try again/);
      assert.match(text(notice), /tell whoever runs Baton/);
      assert.ok(text(notice).includes(`\`/baton audit ${link}\``));
      const noLink = failureNotice({ reason: "it was handed on 5 times" });
      assert.match(text(noLink), /`\/baton audit` with a link to this thread/);
    });

    it("a task's status in words, not its code", () => {
      assert.equal(taskStatusWords("waiting_human"), "waiting on a person");
      assert.equal(taskStatusWords("active"), "in progress");
      assert.equal(taskStatusWords("done"), "done");
    });

    it("a rate limit of one hour reads 'the last hour'", () => {
      assert.match(rateLimitedWords({ max: 2, per: 3_600_000 }), /2 tasks in the last hour,/);
      assert.match(rateLimitedWords({ max: 1, per: 7_200_000 }), /1 task in the last 2 hours,/);
    });
  });
});
