import { duration } from "../../core/duration.ts";
import type { RateLimitStop } from "../../core/ports.ts";
import {
  BLOCKS_PER_MESSAGE,
  BLOCKS_TEXT_BUDGET,
  breakPoint,
  clip,
  escapeMrkdwn,
  MESSAGE_TEXT_MAX,
  SECTION_TEXT_MAX,
  slackDate,
  truncate,
  unescapeSlack,
} from "../mrkdwn.ts";
import { type Block, context, fallback, message, type SlackMessage, section } from "./blocks.ts";

export interface AgentReplyInput {
  /** The agent's answer (model text, mrkdwn formatting kept, links and mentions defused). */
  text: string;
  /**
   * What `npm run audit` takes to find the task: a link to its thread. Without it the note names
   * the command and says to give it this thread's link.
   */
  auditRef?: string;
}

/** The cut note, its command and count included, stays under this. */
const CUT_NOTE_MAX = 400;

/**
 * An agent's answer in the thread, split into 3,000-char sections. An answer past the message's
 * text budget is cut at a break, and a note says how much was left out and where to look.
 */
export function agentReply(input: AgentReplyInput): SlackMessage {
  const escaped = escapeMrkdwn(input.text).trim();
  // The whole answer, should Slack refuse the blocks: plain text may be far longer than blocks.
  const textOnly = clip(input.text, MESSAGE_TEXT_MAX);
  if (escaped === "") return message(fallback(input.text), [section("(no answer)")], textOnly);
  const room = BLOCKS_TEXT_BUDGET - CUT_NOTE_MAX;
  const cut = escaped.length <= room ? escaped.length : breakPoint(escaped, room);
  const kept = escaped.slice(0, cut).trimEnd();
  const blocks: Block[] = splitSections(kept, SECTION_TEXT_MAX, BLOCKS_PER_MESSAGE).map((chunk) =>
    section(chunk),
  );
  if (cut < escaped.length) {
    const left = unescapeSlack(escaped.slice(cut).trim()).length;
    blocks.push(context([cutNote(left, input.auditRef)]));
  }
  return message(fallback(input.text), blocks, textOnly);
}

/** Slack's audit story shows a few lines of an answer: the whole of it is in the CLI's JSON. */
function cutNote(left: number, auditRef: string | undefined): string {
  const command = auditRef
    ? `\`npm run audit -- ${clip(auditRef, 200)} --format json\``
    : "`npm run audit -- --format json` and a link to this thread";
  const note = `✂️ The answer was cut here: ${left.toLocaleString("en-US")} more characters did not fit in Slack. Whoever runs Baton can read all of it with ${command}.`;
  return truncate(note, CUT_NOTE_MAX);
}

export interface FailureNoticeInput {
  reason: string;
  /**
   * What `/baton audit` takes to find the task: a link to its thread. Without it the notice names
   * the command and says to give it this thread's link: the task's id means nothing to the person
   * who asked.
   */
  auditRef?: string;
  /** A tool's rate limit stopped it: a reply before the limit frees would only meet it again. */
  limit?: RateLimitStop;
}

/**
 * A task stopped for good. A reply in its thread opens it again with its agent (a fresh hop and
 * turn count), so that is what the notice offers first; a cause the setup must mend fails again,
 * so the notice says who to tell then.
 */
export function failureNotice(input: FailureNoticeInput): SlackMessage {
  const command = input.auditRef
    ? `\`/baton audit ${clip(input.auditRef, 300)}\``
    : "`/baton audit` with a link to this thread";
  const reason = clip(input.reason, 2000);
  return message(fallback(`This task failed: ${input.reason}`), [
    section(`⚠️ *This task failed:* ${reason}\n${nextStep(input.limit)} What happened: ${command}.`),
  ]);
}

/** What the thread can do now: reply for another try, unless a rate limit would refuse it again. */
function nextStep(limit: RateLimitStop | undefined): string {
  const until = limit && new Date(limit.until);
  if (!limit || !until || !Number.isFinite(until.getTime()))
    return "Reply in this thread to have Baton try again; if it fails the same way, tell whoever runs Baton.";
  const times = limit.max === 1 ? "once" : `${limit.max} times`;
  return `A tool it needs may run at most ${times} in ${duration(limit.perMs)}, so a reply before ${slackDate(until)} meets the same limit: reply after that to have Baton try again, or ask a person to take it.`;
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
      chunks.push(closingFence(rest, max));
      break;
    }
    // At least one character, so a long word that safeCut cannot split still moves on.
    const cut = Math.max(1, breakPoint(rest, max - FENCE_ROOM));
    const chunk = rest.slice(0, cut).trimEnd();
    if (opensFence(chunk) && cut > FENCE_ROOM) {
      // Slack formats each section alone: a code block cut in two is closed here and opened
      // again in the next section, its lines as they were.
      chunks.push(`${chunk}\n${FENCE}`);
      rest = `${FENCE}\n${rest.slice(cut).replace(/^\n/, "")}`;
    } else {
      chunks.push(chunk);
      rest = rest.slice(cut).trimStart();
    }
  }
  return chunks;
}

const FENCE = "```";
const FENCE_ROOM = FENCE.length + 1;

/** Whether the text leaves a code block open: an odd number of fences. */
function opensFence(text: string): boolean {
  return (text.split(FENCE).length - 1) % 2 === 1;
}

/** The last section, cut to `max`, with a code block it leaves open closed. */
function closingFence(text: string, max: number): string {
  const last = truncate(text, max);
  return opensFence(last) ? `${truncate(text, max - FENCE_ROOM)}\n${FENCE}` : last;
}
