import { clip, mention, slackDate, truncate } from "../mrkdwn.ts";
import {
  type Block,
  type Button,
  button,
  context,
  divider,
  fallback,
  header,
  type SlackMessage,
  safeUrl,
  section,
} from "./blocks.ts";

/** Link buttons still send an interaction payload: the app acks this action_id and does nothing. */
export const DIGEST_OPEN_LINK = "digest_open_link";

export interface DigestTaskItem {
  title: string;
  /** A human owner's user or group id (shown as a mention), or an agent's display name. */
  owner: { kind: "human" | "agent"; id: string; name?: string };
  lastActivityAt: Date;
  link?: string;
}

export interface DigestApprovalItem {
  toolName: string;
  agentName: string;
  taskTitle: string;
  /** Slack user and group ids the approval waits on. */
  approverIds: string[];
  requestedAt: Date;
  link?: string;
}

export interface DigestFailedItem {
  title: string;
  reason: string;
  failedAt: Date;
  link?: string;
}

export interface DigestInput {
  /** The team channel sees everything; an owner sees only their own items. */
  audience: "channel" | "owner";
  asOf: Date;
  staleAfterMs: number;
  approvalStaleAfterMs: number;
  staleTasks: DigestTaskItem[];
  staleApprovals: DigestApprovalItem[];
  failedTasks: DigestFailedItem[];
  /** Lists that reached the query limit: there may be more than listed. */
  capped?: { staleTasks?: boolean; staleApprovals?: boolean; failedTasks?: boolean };
}

// 12 one-block rows per section, 3 sections, plus at most 11 fixed blocks: inside 50 blocks.
const BLOCK_ROWS = 12;
// A text-only digest (a channel notice) lists more, still far inside 40,000 chars.
const TEXT_ROWS = 25;
const TEXT_MAX = 12_000;

export function isDigestEmpty(input: DigestInput): boolean {
  return input.staleTasks.length + input.staleApprovals.length + input.failedTasks.length === 0;
}

interface Part {
  heading: string;
  lines: { text: string; link?: string }[];
}

function parts(input: DigestInput): Part[] {
  const count = (list: keyof NonNullable<DigestInput["capped"]>) =>
    `${input[list].length}${input.capped?.[list] ? "+" : ""}`;
  const all: Part[] = [
    {
      heading: `*Tasks idle for more than ${duration(input.staleAfterMs)}* (${count("staleTasks")})`,
      lines: input.staleTasks.map((t) => ({
        text: `*${clip(t.title, 200)}* · ${ownerText(t.owner)} · last activity ${slackDate(t.lastActivityAt)}`,
        link: t.link,
      })),
    },
    {
      heading: `*Approvals waiting more than ${duration(input.approvalStaleAfterMs)}* (${count("staleApprovals")})`,
      lines: input.staleApprovals.map((a) => ({
        text: `*${clip(a.toolName, 80)}* for *${clip(a.agentName, 80)}* on _${clip(a.taskTitle, 150)}_ · waiting on ${a.approverIds.map(mention).join(", ") || "nobody"} since ${slackDate(a.requestedAt)}`,
        link: a.link,
      })),
    },
    {
      heading: `*Failed tasks* (${count("failedTasks")})`,
      lines: input.failedTasks.map((f) => ({
        text: `*${clip(f.title, 200)}* · failed ${slackDate(f.failedAt)}: ${clip(f.reason, 300)}`,
        link: f.link,
      })),
    },
  ];
  return all.filter((part) => part.lines.length > 0);
}

function title(input: DigestInput): string {
  return input.audience === "channel" ? "Baton daily digest" : "Your Baton digest";
}

const ALL_CLEAR = "✅ All clear: no idle tasks, no approvals waiting too long, no failed tasks.";

/** Blocks for a direct message (or a channel post, once the chat surface carries blocks there). */
export function digestMessage(input: DigestInput): SlackMessage {
  const blocks: Block[] = [header(title(input)), context([`As of ${slackDate(input.asOf)}`])];
  const found = parts(input);
  if (found.length === 0) blocks.push(section(ALL_CLEAR));
  for (const part of found) {
    blocks.push(divider(), section(part.heading));
    for (const line of part.lines.slice(0, BLOCK_ROWS)) {
      blocks.push(section(line.text, openButton(line.link)));
    }
    const hidden = part.lines.length - BLOCK_ROWS;
    if (hidden > 0) blocks.push(context([`+${hidden} more not shown.`]));
  }
  return { text: fallback(summary(input)), blocks };
}

/** The same digest as one mrkdwn text with bare links, for surfaces that take text only. */
export function digestText(input: DigestInput): string {
  const found = parts(input);
  if (found.length === 0) return `*${title(input)}*\n${ALL_CLEAR}`;
  const sections = found.map((part) => {
    const lines = part.lines.slice(0, TEXT_ROWS).map((line) => {
      const url = safeUrl(line.link);
      return url ? `• ${line.text} · ${clip(url, 500)}` : `• ${line.text}`;
    });
    const hidden = part.lines.length - TEXT_ROWS;
    if (hidden > 0) lines.push(`+${hidden} more not shown.`);
    return `${part.heading}\n${lines.join("\n")}`;
  });
  return truncate(
    `*${title(input)}* (as of ${slackDate(input.asOf)})\n\n${sections.join("\n\n")}`,
    TEXT_MAX,
  );
}

function summary(input: DigestInput): string {
  if (isDigestEmpty(input)) return `${title(input)}: all clear`;
  return `${title(input)}: ${input.staleTasks.length} idle tasks, ${input.staleApprovals.length} waiting approvals, ${input.failedTasks.length} failed tasks`;
}

function ownerText(owner: DigestTaskItem["owner"]): string {
  return owner.kind === "human" ? mention(owner.id) : clip(owner.name ?? owner.id, 80);
}

function openButton(link: string | undefined): Button | undefined {
  const url = safeUrl(link);
  return url ? button({ text: "Open thread", actionId: DIGEST_OPEN_LINK, url }) : undefined;
}

/** "1 day", "4 hours", "90 seconds": the agents file's durations in words. */
export function duration(ms: number): string {
  const units: [string, number][] = [
    ["day", 86_400_000],
    ["hour", 3_600_000],
    ["minute", 60_000],
    ["second", 1_000],
  ];
  for (const [unit, size] of units) {
    if (ms >= size && ms % size === 0) return `${ms / size} ${unit}${ms === size ? "" : "s"}`;
  }
  return `${Math.round(ms / 1000)} seconds`;
}
