import { clip, isGroupId, isUserId, mention, mentionEach, slackDate, truncate } from "../mrkdwn.ts";
import {
  type Block,
  button,
  context,
  fallback,
  keyValueBlocks,
  message,
  roomBeside,
  type SlackMessage,
  section,
  stableEntries,
} from "./blocks.ts";

export const APPROVAL_APPROVE = "approval_approve";
export const APPROVAL_REJECT = "approval_reject";

export type ApprovalState =
  | { status: "pending" }
  /** `notRun`: approved, and then not run, because the agents file changed first. */
  | { status: "approved"; by: string; at: Date; notRun?: boolean }
  | { status: "rejected"; by: string; at: Date; reason: string }
  | { status: "expired"; at: Date }
  /** The task stopped (failed) before anyone decided. */
  | { status: "withdrawn"; at: Date }
  /** Nobody decided before the agents file stopped letting the call run; `why` says how. */
  | { status: "cancelled"; at: Date; why: string }
  /** `to`: the Slack user and user group IDs it went to, joined by commas. */
  | { status: "escalated"; to: string; at: Date };

export interface ApprovalCardInput {
  approvalId: string;
  agentName: string;
  toolName: string;
  args: Record<string, unknown>;
  /** The tool's argument names in its schema's order: the card lists `args` so, the others after. */
  argOrder?: readonly string[];
  reason?: string;
  requesterId: string;
  /** People who handed the work on to the agent (a send-back, "billing: …"): they asked too. */
  handedOnBy?: string[];
  /** Anyone else whose words in the thread the agent had read when it asked. */
  askedInThread?: string[];
  /** Slack user IDs and user group IDs from config; anything not shaped like an ID is dropped. */
  approvers: { users: string[]; groups: string[] };
  expiresAt: Date;
  /** The agent is in shadow mode: show what it would have done, with nothing to click. */
  shadow?: boolean;
  state: ApprovalState;
}

// Three fields sections: 30 arguments at most, fewer when long; the rest are counted and named.
const ARG_SECTIONS = 3;
const APPROVERS_SHOWN = 20;
const ASKERS_SHOWN = 5;

export function approvalCard(input: ApprovalCardInput): SlackMessage {
  const agent = clip(input.agentName, 80);
  const tool = clip(input.toolName, 100);
  const title = input.shadow
    ? `👻 *Shadow mode:* *${agent}* would have called \`${tool}\` with:`
    : `🔐 *Approval needed:* *${agent}* wants to call \`${tool}\` with:`;
  const head = section(title);
  const tail: Block[] = [];
  if (input.reason) tail.push(section(`*Why:* ${clip(input.reason, 1500)}`));

  if (input.shadow) {
    tail.push(context(["Nothing was done: this agent only proposes actions."]));
    const text = `Shadow mode: ${input.agentName} would have called ${input.toolName}`;
    return message(fallback(text), [head, ...argumentBlocks(input, [head, ...tail]), ...tail]);
  }

  const approvers = whoMayApprove(input);
  tail.push(context([approvers]), stateBlock(input.approvalId, input.state));
  const text = fallback(`Approval needed: ${input.agentName} wants to call ${input.toolName}`);
  const blocks = [head, ...argumentBlocks(input, [head, ...tail]), ...tail];
  return message(text, blocks, textOnly(text, approvers, input));
}

/** The arguments in the room the rest of the card leaves; a line counts and names the others. */
function argumentBlocks(input: ApprovalCardInput, beside: Block[]): Block[] {
  // In one order whether built from the model's call or from the stored row (see stableEntries).
  const pairs = stableEntries(input.args, input.argOrder);
  if (pairs.length === 0) return [context(["(no arguments)"])];
  const noun = "arguments not shown";
  const { blocks, rest } = keyValueBlocks(pairs, ARG_SECTIONS, noun, roomBeside(beside));
  return rest ? [...blocks, context([rest])] : blocks;
}

/**
 * Without its blocks a pending card has no buttons, and an approval is decided only by them:
 * the text says so, so nobody waits on a card they cannot see (the deadline still applies).
 */
function textOnly(text: string, approvers: string, input: ApprovalCardInput): string {
  if (input.state.status !== "pending") return text;
  return [
    text,
    approvers,
    "⚠️ Slack refused to show this approval card, so it has no Approve / Reject buttons, and " +
      `there is no other way to decide it in Slack: it waits until it expires, ${slackDate(input.expiresAt)}.`,
  ].join("\n");
}

function whoMayApprove(input: ApprovalCardInput): string {
  // Groups first: a policy usually names a role ("billing leads"), people are the exceptions.
  const ids = [
    ...input.approvers.groups.filter(isGroupId),
    ...input.approvers.users.filter(isUserId),
  ];
  const approvers = mentions(ids, APPROVERS_SHOWN) || "nobody (no valid approver configured)";
  // Only a card still waiting can expire: a decided one says what became of it instead.
  const expires =
    input.state.status === "pending" ? ` · Expires ${slackDate(input.expiresAt)}` : "";
  return truncate(`Approvers: ${approvers}${whoAsked(input)}${expires}`, 2000);
}

/**
 * Everyone the approval counts as having asked for it, who may not decide it: the work may have
 * passed through a person since the task began, and the agent acts on their instruction.
 */
function whoAsked(input: ApprovalCardInput): string {
  const parts: [string, string[]][] = [
    ["Requested by", [input.requesterId]],
    ["handed on by", input.handedOnBy ?? []],
    ["asked in the thread by", input.askedInThread ?? []],
  ];
  return parts
    .map(([words, ids]) => [words, mentions(ids.filter(isUserId), ASKERS_SHOWN)])
    .filter(([, names]) => names)
    .map(([words, names]) => ` · ${words} ${names}`)
    .join("");
}

/** The first `max` distinct IDs as mentions, and how many more; "" for none. */
function mentions(ids: string[], max: number): string {
  const unique = [...new Set(ids)];
  const shown = unique.slice(0, max).map(mention);
  if (unique.length > shown.length) shown.push(`+${unique.length - shown.length} more`);
  return shown.join(", ");
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
    case "approved": {
      const approved = `✅ Approved by ${mention(state.by)} ${slackDate(state.at)}`;
      return section(
        state.notRun
          ? `${approved}, but not run: the agents file changed before it could run, so nothing was done`
          : approved,
      );
    }
    case "rejected":
      return section(
        `❌ Rejected by ${mention(state.by)} ${slackDate(state.at)}: ${clip(state.reason, 1500)}`,
      );
    case "expired":
      return section(`⌛ Expired ${slackDate(state.at)} without a decision`);
    case "withdrawn":
      return section(`🚫 Withdrawn ${slackDate(state.at)}: the task stopped before a decision`);
    case "cancelled":
      return section(
        `🚫 Cancelled ${slackDate(state.at)}: ${clip(state.why, 1500)}, so it can no longer be approved. Nothing was done.`,
      );
    case "escalated":
      return section(`⤴️ Escalated to ${mentionEach(state.to)} ${slackDate(state.at)}`);
  }
}
