import assert from "node:assert/strict";
import { test } from "node:test";
import { DESCRIBE } from "../src/core/audit-words.ts";
import { typedText } from "../src/slack/typed-text.ts";
import { appHome } from "../src/slack/views/app-home.ts";
import { auditStoryBlocks } from "../src/slack/views/audit-story.ts";
import { digestMessage } from "../src/slack/views/digest.ts";
import { escalationCard } from "../src/slack/views/escalation-card.ts";
import { handoffCard } from "../src/slack/views/handoff-card.ts";

// What a person typed comes back as they saw it: Slack's markup for links, people, channels and
// broadcasts becomes words, and none of it can ping, nor link under a label the customer chose.

const TYPED = "where is order 1042? see <https://example.com/x|my order>";
const AT = new Date("2025-03-04T10:42:00Z");

test("Slack's markup in typed text reads as the person typed it, escaped", () => {
  const cases: [string, string][] = [
    [TYPED, "where is order 1042? see my order (https://example.com/x)"],
    ["see <https://example.com/x>", "see https://example.com/x"],
    ["at <http://example.com|example.com>", "at example.com"],
    ["mail <mailto:a@b.co|a@b.co>", "mail a@b.co"],
    ["ask <@U0LEE> or <@U0SAM|sam>", "ask @U0LEE or @sam"],
    ["in <#C0SUP|support>, <#C0OPS>", "in #support, <#C0OPS>"],
    ["<!here> <!channel> <!everyone|everyone>", "@\u200Dhere @\u200Dchannel @\u200Deveryone"],
    ["<!subteam^S0LEADS|@leads> by <!date^1741099320^{date}|Mar 4>", "@leads by Mar 4"],
    ["a < b > c & <fake>", "a &lt; b &gt; c &amp; &lt;fake&gt;"],
    [
      "pay <https://evil.example|https://bank.example>",
      "pay https://bank.example (https://evil.example)",
    ],
  ];
  for (const [typed, shown] of cases) assert.equal(typedText(typed, 300), shown, typed);
});

test("typed text never yields a live broadcast, a user mention or a labelled link", () => {
  const shown = typedText("<!channel> <@UEVIL> <https://evil.example|bank> <#C1|x>", 300);
  assert.doesNotMatch(shown, /<!|<@|<http|\|/);
});

test("App Home, the digest and the audit story show a typed link as words, not markup", () => {
  const home = appHome({
    userId: "U0LEE",
    openTasks: [
      { taskId: "t1", title: TYPED, ownerName: "Billing", status: "open", updatedAt: AT },
    ],
    waitingApprovals: [
      {
        approvalId: "a1",
        toolName: "issue_refund",
        agentName: "Billing",
        summary: TYPED,
        requestedAt: AT,
      },
    ],
    recentDecisions: [],
  });
  const at = AT.toISOString();
  const digest = digestMessage({
    audience: "channel",
    asOf: at,
    staleAfterMs: 86_400_000,
    approvalStaleAfterMs: 3_600_000,
    staleTasks: [
      { title: TYPED, owner: { kind: "agent", id: "cs", name: "CS" }, lastActivityAt: at },
    ],
    staleApprovals: [
      {
        toolName: "issue_refund",
        agentName: "Billing",
        taskTitle: TYPED,
        approverIds: [],
        requestedAt: at,
      },
    ],
    failedTasks: [{ title: TYPED, failedAt: at }],
  });
  const story = auditStoryBlocks(
    [
      {
        at: AT,
        actor: "U0DANA",
        kind: "message_received",
        parts: DESCRIBE.message_received?.({ text: TYPED }, "U0DANA") ?? [],
      },
      {
        at: AT,
        actor: "system",
        kind: "task_started",
        parts: DESCRIBE.task_started?.({ agent: "cs", title: TYPED }, "system") ?? [],
      },
    ],
    { taskId: "task-1", page: 1, pageSize: 40, agentName: (id) => id },
  );
  for (const [surface, payload, times] of [
    ["App Home", home, 2],
    ["digest", digest, 3],
    ["audit story", story, 2],
  ] as const) {
    const text = JSON.stringify(payload);
    assert.doesNotMatch(text, /&lt;https|\|my order/, surface);
    assert.equal(text.split("my order (https://example.com/x)").length - 1, times, surface);
  }
});

test("a handoff or escalation card shows a typed link in its summary as words", () => {
  const handoff = handoffCard({
    fromName: "Customer Service",
    toName: "Fulfillment",
    kind: "transfer",
    note: {
      summary: TYPED,
      done: [],
      needed: "ship it",
      facts: {},
      unknowns: [],
      urgency: "normal",
    },
  });
  const escalation = escalationCard({
    escalationId: "esc_1",
    fromName: "Billing",
    owner: { kind: "group", id: "S0BILL" },
    state: { status: "open" },
    note: {
      requester: "<@U0DANA>",
      summary: TYPED,
      done: [],
      reason: "Stopped automatically: over the cap.",
      urgency: "high",
      lane: "owner_escalation",
      recommended_action: "Read the thread.",
      facts: {},
    },
  });
  for (const [card, payload] of [
    ["handoff", handoff],
    ["escalation", escalation],
  ] as const) {
    const text = JSON.stringify(payload.blocks);
    assert.doesNotMatch(text, /&lt;https|\|my order/, card);
    assert.match(text, /my order \(https:\/\/example\.com\/x\)/, card);
  }
});
