import { clip, isGroupId, isUserId, mention, slackDate, truncate } from "../mrkdwn.ts";
import {
  type Block,
  button,
  context,
  fallback,
  keyValueBlocks,
  type SlackMessage,
  section,
} from "./blocks.ts";

export const APPROVAL_APPROVE = "approval_approve";
export const APPROVAL_REJECT = "approval_reject";

export type ApprovalState =
  | { status: "pending" }
  | { status: "approved"; by: string; at: Date }
  | { status: "rejected"; by: string; at: Date; reason: string }
  | { status: "expired"; at: Date }
  /** `to` is the Slack user or user group ID it went to. */
  | { status: "escalated"; to: string; at: Date };

export interface ApprovalCardInput {
  approvalId: string;
  agentName: string;
  toolName: string;
  args: Record<string, unknown>;
  reason?: string;
  requesterId: string;
  /** Slack user IDs and user group IDs from config; anything not shaped like an ID is dropped. */
  approvers: { users: string[]; groups: string[] };
  expiresAt: Date;
  /** The agent is in shadow mode: show what it would have done, with nothing to click. */
  shadow?: boolean;
  state: ApprovalState;
}

// Three fields sections: 30 arguments on the card; the rest are named and live in the audit trail.
const ARG_SECTIONS = 3;
const APPROVERS_SHOWN = 20;

export function approvalCard(input: ApprovalCardInput): SlackMessage {
  const agent = clip(input.agentName, 80);
  const tool = clip(input.toolName, 100);
  const title = input.shadow
    ? `👻 *Shadow mode:* *${agent}* would have called \`${tool}\` with:`
    : `🔐 *Approval needed:* *${agent}* wants to call \`${tool}\` with:`;
  const blocks: Block[] = [section(title), ...argumentBlocks(input.args)];
  if (input.reason) blocks.push(section(`*Why:* ${clip(input.reason, 1500)}`));

  if (input.shadow) {
    blocks.push(context(["Nothing was done: this agent only proposes actions."]));
    const text = `Shadow mode: ${input.agentName} would have called ${input.toolName}`;
    return { text: fallback(text), blocks };
  }

  blocks.push(context([whoMayApprove(input)]));
  blocks.push(stateBlock(input.approvalId, input.state));
  const text = `Approval needed: ${input.agentName} wants to call ${input.toolName}`;
  return { text: fallback(text), blocks };
}

function argumentBlocks(args: Record<string, unknown>): Block[] {
  const pairs = Object.entries(args);
  if (pairs.length === 0) return [context(["(no arguments)"])];
  const { blocks, rest } = keyValueBlocks(pairs, ARG_SECTIONS, "arguments not shown");
  return rest ? [...blocks, context([rest])] : blocks;
}

function whoMayApprove(input: ApprovalCardInput): string {
  // Groups first: a policy usually names a role ("billing leads"), people are the exceptions.
  const ids = [
    ...new Set([
      ...input.approvers.groups.filter(isGroupId),
      ...input.approvers.users.filter(isUserId),
    ]),
  ];
  const shown = ids.slice(0, APPROVERS_SHOWN).map(mention);
  if (ids.length > shown.length) shown.push(`+${ids.length - shown.length} more`);
  const approvers = shown.length > 0 ? shown.join(", ") : "nobody (no valid approver configured)";
  const requester = isUserId(input.requesterId)
    ? ` · Requested by ${mention(input.requesterId)}`
    : "";
  return truncate(
    `Approvers: ${approvers}${requester} · Expires ${slackDate(input.expiresAt)}`,
    2000,
  );
}

function stateBlock(approvalId: string, state: ApprovalState): Block {
  switch (state.status) {
    case "pending":
      return {
        type: "actions",
        elements: [
          button({
            text: "Approve",
            actionId: APPROVAL_APPROVE,
            value: approvalId,
            style: "primary",
          }),
          button({ text: "Reject", actionId: APPROVAL_REJECT, value: approvalId, style: "danger" }),
        ],
      };
    case "approved":
      return section(`✅ Approved by ${mention(state.by)} ${slackDate(state.at)}`);
    case "rejected":
      return section(
        `❌ Rejected by ${mention(state.by)} ${slackDate(state.at)}: ${clip(state.reason, 1500)}`,
      );
    case "expired":
      return section(`⌛ Expired ${slackDate(state.at)} without a decision`);
    case "escalated":
      return section(`⤴️ Escalated to ${mention(state.to)} ${slackDate(state.at)}`);
  }
}
