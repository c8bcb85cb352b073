import type { Named, Part } from "../../core/audit-words.ts";
import {
  BLOCKS_TEXT_BUDGET,
  clip,
  escapeMrkdwn,
  isChannelId,
  isUserId,
  mention,
  mentionEach,
  SECTION_TEXT_MAX,
  slackDate,
  truncate,
} from "../mrkdwn.ts";
import { typedText } from "../typed-text.ts";
import {
  actions,
  type Block,
  blocksTextLength,
  button,
  context,
  message,
  type SlackMessage,
  section,
} from "./blocks.ts";

export const AUDIT_PAGE = "audit_page";
/** 40 lines of at most ~700 chars pack into at most 10 sections, far inside 50 blocks. */
export const AUDIT_PAGE_SIZE_MAX = 40;

export interface AuditStoryEntry {
  at: Date;
  /** Who acted: an agent's display name or a person's name. */
  actor: string;
  /** The person's Slack user ID, when a person acted: shown as a mention instead of `actor`. */
  userId?: string;
  /** The event kind, e.g. "handoff", "tool_call", "decision". */
  kind: string;
  /** What happened: its text is escaped here, and the names in it said as people read them. */
  parts: readonly Part[];
}

export interface AuditStoryOptions {
  taskId: string;
  /** 1-based; clamped to the pages that exist. */
  page: number;
  /** Clamped to 1..AUDIT_PAGE_SIZE_MAX. */
  pageSize: number;
  /** The reference's other tasks the reader may read (an order's earlier ones), newest first. */
  otherTaskIds?: readonly string[];
  /** An agent's display name; its id when none is given. */
  agentName?: (id: string) => string;
}

/** Other tasks named at most; an order's tasks are a handful. */
const OTHER_TASKS_SHOWN = 5;

/**
 * One page of a task's history, oldest first, for an ephemeral reply to `/baton audit`. The next
 * page button's value is `<taskId>:<page>`, parsed by the action handler.
 */
export function auditStoryBlocks(
  entries: AuditStoryEntry[],
  options: AuditStoryOptions,
): SlackMessage {
  const pageSize = clampInt(options.pageSize, 1, AUDIT_PAGE_SIZE_MAX);
  const pages = Math.max(1, Math.ceil(entries.length / pageSize));
  const page = clampInt(options.page, 1, pages);
  const shown = entries.slice((page - 1) * pageSize, page * pageSize);
  const task = clip(options.taskId, 60);

  const head = context([
    `📜 Audit story for task \`${task}\` · ${entries.length} events${othersWords(options.otherTaskIds ?? [])}`,
  ]);
  const tail: Block[] = [context([`Page ${page} of ${pages}`])];
  if (page < pages) {
    const value = `${options.taskId}:${page + 1}`;
    tail.push(actions([button({ text: "Next page", actionId: AUDIT_PAGE, value })]));
  }
  // Every line of the page shows, each with an equal share of the message's text budget.
  const share = Math.floor(
    (BLOCKS_TEXT_BUDGET - blocksTextLength([head, ...tail])) / Math.max(1, shown.length),
  );
  const body =
    shown.length > 0
      ? pack(shown.map((entry) => line(entry, share, options.agentName ?? ((id) => id)))).map(
          (text) => section(text),
        )
      : [section("No audit events for this task yet.")];
  return message(`Audit story for task ${task}, page ${page} of ${pages}`, [
    head,
    ...body,
    ...tail,
  ]);
}

/** " · also of this reference: `/baton audit <id>`, …": the tasks whose stories this one is not. */
function othersWords(ids: readonly string[]): string {
  if (ids.length === 0) return "";
  const shown = ids.slice(0, OTHER_TASKS_SHOWN).map((id) => `\`/baton audit ${clip(id, 60)}\``);
  const more = ids.length > OTHER_TASKS_SHOWN ? ` and ${ids.length - OTHER_TASKS_SHOWN} more` : "";
  return ` · also of this reference: ${shown.join(", ")}${more}`;
}

/** The smallest share of an entry's own text, however many lines share the page. */
const ENTRY_TEXT_MIN = 40;

/** One entry in `max` characters at most (its own text shortened first), or about that. */
function line(entry: AuditStoryEntry, max: number, agentName: (id: string) => string): string {
  const when = slackDate(entry.at, "{date_short} {time_secs}");
  const who =
    entry.userId && isUserId(entry.userId) ? mention(entry.userId) : clip(entry.actor, 80);
  const lead = `${when} *${who}* · _${clip(entry.kind, 40)}_ · `;
  const room = Math.min(500, Math.max(ENTRY_TEXT_MIN, max - lead.length - 1));
  // Each part is cut to the room before it is joined, so a 10,000-character message costs no more.
  const text = entry.parts.map((p) => truncate(said(p, agentName), room)).join("");
  return `${lead}${truncate(text, room)}`;
}

/** A part as Slack shows it: text escaped, names as mentions, display names and local dates. */
function said(part: Part, agentName: (id: string) => string): string {
  if (typeof part === "string") return escapeMrkdwn(part);
  return named(part, agentName);
}

function named(part: Named, agentName: (id: string) => string): string {
  if ("agent" in part) return clip(agentName(part.agent), 80);
  if ("person" in part || "group" in part)
    return mention("person" in part ? part.person : part.group);
  if ("owner" in part) {
    const { kind, id } = part.owner;
    return kind === "channel" && isChannelId(id) ? mention(id) : mentionEach(id);
  }
  if ("at" in part) {
    const at = new Date(part.at);
    return Number.isFinite(at.getTime()) ? slackDate(at) : clip(part.at, 40);
  }
  if ("allowedBy" in part) return allowedWords(part.allowedBy, part.decidedBy);
  if ("typed" in part) return typedText(part.typed, Number.POSITIVE_INFINITY);
  return "";
}

/** Who let a call run, in words: the person who approved it, or the policy that needed nobody. */
export function allowedWords(allowedBy: string, decidedBy: string): string {
  if (allowedBy.startsWith("approval:"))
    return isUserId(decidedBy) ? `approved by ${mention(decidedBy)}` : "approved by a person";
  const policy = /^policy:(.+)$/.exec(allowedBy)?.[1];
  if (policy === "read") return "a read: no approval needed";
  if (policy) return `on its own (${clip(policy, 40)})`;
  return "allowed by nobody";
}

/** Greedily joins lines into sections of at most 3,000 chars; each line is far shorter. */
function pack(lines: string[]): string[] {
  const sections: string[] = [];
  let current = "";
  for (const next of lines) {
    if (current !== "" && current.length + 1 + next.length > SECTION_TEXT_MAX) {
      sections.push(current);
      current = "";
    }
    current = current === "" ? next : `${current}\n${next}`;
  }
  if (current !== "") sections.push(current);
  return sections;
}

function clampInt(value: number, min: number, max: number): number {
  if (!Number.isFinite(value)) return min;
  return Math.min(max, Math.max(min, Math.floor(value)));
}
