import type { types } from "@slack/bolt";
import {
  clip,
  OPTION_TEXT_MAX,
  OPTION_VALUE_MAX,
  OPTIONS_MAX,
  orElse,
  PRIVATE_METADATA_MAX,
  plainText,
} from "../mrkdwn.ts";
import { type ModalView, section } from "./blocks.ts";

export const REJECT_REASON_CALLBACK = "approval_reject_reason";
export const REJECT_REASON_BLOCK = "reason";
export const REJECT_REASON_ACTION = "reason_input";
export const SEND_BACK_CALLBACK = "escalation_send_back";
export const SEND_BACK_AGENT_BLOCK = "agent";
export const SEND_BACK_AGENT_ACTION = "agent_select";
export const SEND_BACK_INSTRUCTION_BLOCK = "instruction";
export const SEND_BACK_INSTRUCTION_ACTION = "instruction_input";
/** The reason goes back to the agent: long enough to explain, short enough for its prompt. */
export const REASON_MAX = 1000;
export const INSTRUCTION_MAX = 1000;

export interface RejectReasonModalInput {
  approvalId: string;
  /** Unknown when the form opens before its approval is read (see askRejectReason). */
  toolName?: string;
}

/** Asks why; the submission carries the approval id in private_metadata. */
export function rejectReasonModal(input: RejectReasonModalInput): ModalView {
  const what = input.toolName ? `\`${clip(input.toolName, 100)}\`` : "this request";
  return {
    type: "modal",
    callback_id: REJECT_REASON_CALLBACK,
    private_metadata: metadata(input.approvalId),
    title: plain("Reject"),
    submit: plain("Reject"),
    close: plain("Cancel"),
    blocks: [
      section(`Why are you rejecting ${what}? The agent sees your reason.`),
      textInput(REJECT_REASON_BLOCK, REJECT_REASON_ACTION, "Reason", REASON_MAX),
    ],
  };
}

/** A form, turned into why its person may not use it (`words`, mrkdwn): nothing to submit. */
export function refusedModal(title: "Reject" | "Send back", words: string): ModalView {
  return {
    type: "modal",
    title: plain(title),
    close: plain("Close"),
    blocks: [section(words)],
  };
}

export interface SendBackModalInput {
  escalationId: string;
  /** Agents the human may hand the work to; `id` is the select value, so keep it an id. */
  agents: { id: string; name: string }[];
}

/** Picks an agent and says what to do; with no eligible agent it explains and offers no submit. */
export function sendBackModal(input: SendBackModalInput): ModalView {
  // Option values must be unique and at most 150 chars: an id that is not is skipped, not cut.
  const seen = new Set<string>();
  const options = input.agents
    .filter((agent) => agent.id.trim() !== "" && agent.id.length <= OPTION_VALUE_MAX)
    .filter((agent) => !seen.has(agent.id) && seen.add(agent.id))
    .slice(0, OPTIONS_MAX)
    .map((agent) => ({
      text: plain(orElse(plainText(agent.name || agent.id, OPTION_TEXT_MAX), "Unnamed agent")),
      value: agent.id,
    }));
  const base = {
    type: "modal" as const,
    callback_id: SEND_BACK_CALLBACK,
    private_metadata: metadata(input.escalationId),
    title: plain("Send back to an agent"),
    close: plain("Cancel"),
  };
  if (options.length === 0) {
    return {
      ...base,
      blocks: [section("No agent can take this work back. Take it over instead.")],
    };
  }
  const select: types.InputBlock = {
    type: "input",
    block_id: SEND_BACK_AGENT_BLOCK,
    label: plain("Agent"),
    element: {
      type: "static_select",
      action_id: SEND_BACK_AGENT_ACTION,
      placeholder: plain("Choose an agent"),
      options,
    },
  };
  return {
    ...base,
    submit: plain("Send back"),
    blocks: [
      select,
      textInput(
        SEND_BACK_INSTRUCTION_BLOCK,
        SEND_BACK_INSTRUCTION_ACTION,
        "Instruction",
        INSTRUCTION_MAX,
      ),
    ],
  };
}

function textInput(
  blockId: string,
  actionId: string,
  label: string,
  max: number,
): types.InputBlock {
  return {
    type: "input",
    block_id: blockId,
    label: plain(label),
    element: {
      type: "plain_text_input",
      action_id: actionId,
      multiline: true,
      min_length: 1,
      max_length: max,
    },
  };
}

/** Ids are ours; an over-long one is a bug, and cutting it would decide the wrong row. */
function metadata(id: string): string {
  if (id.length === 0 || id.length > PRIVATE_METADATA_MAX) throw new RangeError("bad view id");
  return id;
}

function plain(text: string): types.PlainTextElement {
  return { type: "plain_text", text };
}
