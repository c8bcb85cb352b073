import { type DigestInput, type DigestTaskItem, isDigestEmpty } from "../../core/digest.ts";
import { duration } from "../../core/duration.ts";
import { clip, mention, slackDate } from "../mrkdwn.ts";
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

// 12 one-block rows per section, 3 sections, plus at most 11 fixed blocks: inside 50 blocks.
const BLOCK_ROWS = 12;

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
        text: `*${clip(t.title, 200)}* · ${ownerText(t.owner)} · last activity ${when(t.lastActivityAt)}`,
        link: t.link,
      })),
    },
    {
      heading: `*Approvals waiting more than ${duration(input.approvalStaleAfterMs)}* (${count("staleApprovals")})`,
      lines: input.staleApprovals.map((a) => ({
        text: `*${clip(a.toolName, 80)}* for *${clip(a.agentName, 80)}* on _${clip(a.taskTitle, 150)}_ · waiting on ${a.approverIds.map(mention).join(", ") || "nobody"} since ${when(a.requestedAt)}`,
        link: a.link,
      })),
    },
    {
      heading: `*Failed tasks* (${count("failedTasks")})`,
      lines: input.failedTasks.map((f) => ({
        text: `*${clip(f.title, 200)}* · failed ${when(f.failedAt)}: ${clip(f.reason, 300)}`,
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

/** Blocks for the channel post and for each owner's direct message. */
export function digestMessage(input: DigestInput): SlackMessage {
  const blocks: Block[] = [header(title(input)), context([`As of ${when(input.asOf)}`])];
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

function summary(input: DigestInput): string {
  if (isDigestEmpty(input)) return `${title(input)}: all clear`;
  return `${title(input)}: ${input.staleTasks.length} idle tasks, ${input.staleApprovals.length} waiting approvals, ${input.failedTasks.length} failed tasks`;
}

/** The digest's dates are ISO strings (it is stored as JSON); a bad one reads "an unknown time". */
function when(iso: string): string {
  return slackDate(new Date(iso));
}

function ownerText(owner: DigestTaskItem["owner"]): string {
  return owner.kind === "human" ? mention(owner.id) : clip(owner.name ?? owner.id, 80);
}

function openButton(link: string | undefined): Button | undefined {
  const url = safeUrl(link);
  return url ? button({ text: "Open thread", actionId: DIGEST_OPEN_LINK, url }) : undefined;
}
