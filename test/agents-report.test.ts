import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { AgentActivity } from "../src/db/agent-activity.repository.ts";
import { agentsReport } from "../src/slack/agents-report.ts";

const activity = (agentId: string, writes: Partial<AgentActivity["writes"]>): AgentActivity => ({
  agentId,
  modelCalls: 3,
  costUsd: 1.5,
  escalations: 0,
  writes: {
    ran: 0,
    approved: 0,
    approvedFailed: 0,
    rejected: 0,
    expired: 0,
    waiting: 0,
    withdrawn: 0,
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

  it("escapes an agent's name", () => {
    const text = agentsReport([{ id: "x", name: "<!channel> *boss*", autonomy: "shadow" }], [], 30);
    assert.match(text, /• \*&lt;!channel&gt; \*boss\** · shadow · 0 model calls/);
    assert.doesNotMatch(text, /<!channel>/);
  });
});
