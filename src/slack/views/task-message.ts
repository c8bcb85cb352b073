import {
  BLOCKS_PER_MESSAGE,
  clip,
  escapeMrkdwn,
  SECTION_TEXT_MAX,
  safeCut,
  truncate,
} from "../mrkdwn.ts";
import { fallback, type SlackMessage, section } from "./blocks.ts";

export interface AgentReplyInput {
  /** The agent's answer (model text, mrkdwn formatting kept, links and mentions defused). */
  text: string;
}

/** An agent's answer in the thread, split into 3,000-char sections; past 50 it is cut. */
export function agentReply(input: AgentReplyInput): SlackMessage {
  const chunks = splitSections(escapeMrkdwn(input.text), SECTION_TEXT_MAX, BLOCKS_PER_MESSAGE);
  const blocks = (chunks.length > 0 ? chunks : ["(no answer)"]).map((chunk) => section(chunk));
  return { text: fallback(input.text), blocks };
}

export interface FailureNoticeInput {
  taskId: string;
  reason: string;
  /** Shows the task's history; defaults to `/baton audit <taskId>` (there is no retry command). */
  auditCommand?: string;
}

export function failureNotice(input: FailureNoticeInput): SlackMessage {
  const command = clip(input.auditCommand ?? `/baton audit ${input.taskId}`, 300);
  const reason = clip(input.reason, 2000);
  return {
    text: fallback(`This task failed: ${input.reason}`),
    blocks: [section(`⚠️ *This task failed:* ${reason}\nSee what happened with \`${command}\`.`)],
  };
}

/**
 * Splits safe mrkdwn into at most `maxChunks` pieces of at most `max` chars, preferring paragraph,
 * then line, then word breaks in the second half of each piece; the last piece is cut with "…".
 */
export function splitSections(text: string, max: number, maxChunks: number): string[] {
  const chunks: string[] = [];
  let rest = text.trim();
  while (rest.length > 0 && chunks.length < maxChunks) {
    if (rest.length <= max || chunks.length === maxChunks - 1) {
      chunks.push(truncate(rest, max));
      break;
    }
    const cut = breakPoint(rest, max);
    chunks.push(rest.slice(0, cut).trimEnd());
    rest = rest.slice(cut).trimStart();
  }
  return chunks;
}

function breakPoint(text: string, max: number): number {
  const window = text.slice(0, max);
  for (const separator of ["\n\n", "\n", " "]) {
    const at = window.lastIndexOf(separator);
    if (at > max / 2) return safeCut(text, at);
  }
  // One long word: cut anywhere that splits no character, entity or token.
  return Math.max(1, safeCut(text, max));
}
