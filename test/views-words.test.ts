import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { approvalCard } from "../src/slack/views/approval-card.ts";
import { escalationCard } from "../src/slack/views/escalation-card.ts";
import { failureNotice } from "../src/slack/views/task-message.ts";
import { rateLimitedWords, taskStatusWords } from "../src/slack/words.ts";
import { assertWithinSlackLimits } from "./support/slack-limits.ts";

// What a person reads on a card or notice: mentions rather than IDs, a next step, no stale lines.

const AT = new Date("2025-03-04T10:42:00Z");
const text = (payload: { blocks: unknown[] }) => JSON.stringify(payload.blocks);

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
