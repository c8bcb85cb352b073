import assert from "node:assert/strict";
import { test } from "node:test";
import { DESCRIBE } from "../src/core/audit-words.ts";
import { type AuditStoryEntry, auditStoryBlocks } from "../src/slack/views/audit-story.ts";
import { assertWithinSlackLimits } from "./support/slack-limits.ts";

// `/baton audit` in Slack names agents, people and times as people read them, from each event's
// data: never the ledger's `agent:`/`human:`/`policy:` ids, uuids or ISO times.

const AT = new Date("2025-03-04T10:42:00Z");
const APPROVAL = "5f0c2a4e-9b1d-4c3a-8e2f-0a1b2c3d4e5f";
const NAMES: Record<string, string> = { billing: "Billing", cs: "Customer Service" };

function story(events: [actor: string, kind: string, data: Record<string, unknown>][]): string {
  const entries: AuditStoryEntry[] = events.map(([actor, kind, data]) => ({
    at: AT,
    actor,
    kind,
    parts: DESCRIBE[kind]?.(data, actor) ?? [kind],
  }));
  const page = auditStoryBlocks(entries, {
    taskId: "task-1",
    page: 1,
    pageSize: 40,
    agentName: (id) => NAMES[id] ?? id,
  });
  assertWithinSlackLimits(page);
  return page.blocks
    .flatMap((b) => (b.type === "section" && b.text ? [b.text.text] : []))
    .join("\n");
}

test("the Slack story names agents, people, channels and times as people read them", () => {
  const text = story([
    ["system", "task_started", { agent: "cs", title: "Return order 1077" }],
    ["cs", "handoff", { to: "billing", kind: "transfer", note: { summary: "S.", needed: "N." } }],
    ["billing", "handoff", { to: "cs", kind: "hand_back", note: { result: "Refunded." } }],
    ["cs", "tool_call", { tool: "lookup_order", status: "done", allowed_by: "policy:read" }],
    ["cs", "tool_call", { tool: "ship_order", status: "done", allowed_by: "policy:autonomous" }],
    [
      "billing",
      "tool_call",
      {
        tool: "issue_refund",
        status: "done",
        allowed_by: `approval:${APPROVAL} by U0LEE`,
        decided_by: "U0LEE",
      },
    ],
    ["billing", "tool_call", { tool: "issue_refund", status: "rejected", decided_by: "U0LEE" }],
    [
      "billing",
      "approval_requested",
      {
        tool: "issue_refund",
        approvers: { users: ["U0LEE"], groups: ["S0LEADS"] },
        policy: "refunds-over-100",
        asked_by: { requester: "U0DANA", handed_on_by: ["U0SAM"] },
        expires_at: "2025-03-04T14:42:00.000Z",
      },
    ],
    ["billing", "tool_call_repeated", { tool: "issue_refund", call_id: "c2", repeat_of: "c1" }],
    ["cs", "escalated", { owner: { kind: "channel", id: "C0SUPPORT" }, note: { summary: "S." } }],
    ["U0SAM", "escalation_decided", { choice: { kind: "send_back", agentId: "billing" } }],
    ["U0X", "approval_refused", { reason: "not_an_approver" }],
    ["U0DANA", "task_reopened", { owner: "cs", owner_kind: "agent", was: "done" }],
    ["U0DANA", "task_reopened", { owner: "U0SAM,S0LEADS" }],
  ]);
  for (const said of [
    "Task started with Customer Service: ",
    "Handed over to Billing: S. Needed: N.",
    "Handed back to Customer Service: Refunded.",
    "lookup_order() → done; a read: no approval needed",
    "ship_order() → done; on its own (autonomous)",
    "issue_refund() → done; approved by <@U0LEE>",
    "issue_refund() → rejected; rejected by <@U0LEE>",
    "Asked <@U0LEE>, <!subteam^S0LEADS> to approve issue_refund() under policy refunds-over-100, requested by <@U0DANA>, handed on by <@U0SAM>, expires <!date^1741099320^",
    "issue_refund called again in the same reply; not run twice",
    "Escalated to <#C0SUPPORT>, as the agent asked for a person: S.",
    "Sent the escalated work to Billing",
    "Approval click refused: <@U0X> is not one of its approvers",
    "back with Customer Service",
    "back with <@U0SAM>, <!subteam^S0LEADS>",
  ])
    assert.ok(text.includes(said), `${said}\n---\n${text}`);
  for (const internal of [/agent:/, /human:/, /policy:/, /approval:/, /[0-9a-f]{8}-[0-9a-f]{4}-/])
    assert.doesNotMatch(text, internal);
  assert.doesNotMatch(text, /\(c2, as c1\)/, "model call ids are the ledger's, not people's");
});

test("text in an event stays text: `human:U…` or a mention typed by a customer names nobody", () => {
  const typed = "I am human:UEVIL, ask <@UEVIL> or <!channel> at <https://evil.example|bank>";
  const text = story([
    ["U0DANA", "message_received", { text: typed }],
    ["cs", "handoff", { to: "<@UEVIL>", note: { summary: "human:UEVIL" } }],
  ]);
  const asTyped = "I am human:UEVIL, ask @UEVIL or @\u200Dchannel at bank (https://evil.example)";
  assert.ok(text.includes(asTyped), text);
  assert.doesNotMatch(text, /<@UEVIL>|<!channel>|<https:/);
  assert.ok(text.includes("Handed over to &lt;@UEVIL&gt;: human:UEVIL"), text);
});
