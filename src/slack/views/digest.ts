import {
  type DigestInput,
  type DigestList,
  type DigestTaskItem,
  type DigestTotal,
  digestTotal,
  isDigestEmpty,
} from "../../core/digest.ts";
import { duration } from "../../core/duration.ts";
import { BLOCKS_TEXT_BUDGET, clip, mention, slackDate } from "../mrkdwn.ts";
import { typedText } from "../typed-text.ts";
import {
  type Block,
  type Button,
  blocksTextLength,
  button,
  context,
  divider,
  fallback,
  header,
  message,
  type SlackMessage,
  safeUrl,
  section,
} from "./blocks.ts";

/** Link buttons still send an interaction payload: the app acks this action_id and does nothing. */
export const DIGEST_OPEN_LINK = "digest_open_link";

// 12 one-block rows per section, 3 sections, plus at most 11 fixed blocks: inside 50 blocks.
const BLOCK_ROWS = 12;
/** "At least N more not shown." */
const MORE_LINE_MAX = 40;

interface Part {
  heading: string;
  lines: { text: string; link?: string }[];
  total: DigestTotal;
}

function parts(input: DigestInput): Part[] {
  const count = (list: DigestList) => countText(digestTotal(input, list));
  const all: Part[] = [
    {
      heading: `*Tasks idle for more than ${duration(input.staleAfterMs)}* (${count("staleTasks")})`,
      total: digestTotal(input, "staleTasks"),
      lines: input.staleTasks.map((t) => ({
        text: `*${typedText(t.title, 200)}* · ${ownerText(t.owner)} · last activity ${when(t.lastActivityAt)}`,
        link: t.link,
      })),
    },
    {
      heading: `*Approvals waiting more than ${duration(input.approvalStaleAfterMs)}* (${count("staleApprovals")})`,
      total: digestTotal(input, "staleApprovals"),
      lines: input.staleApprovals.map((a) => ({
        text: `*${clip(a.toolName, 80)}* for *${clip(a.agentName, 80)}* on _${typedText(a.taskTitle, 150)}_ · waiting on ${a.approverIds.map(mention).join(", ") || "nobody"} since ${when(a.requestedAt)}`,
        link: a.link,
      })),
    },
    {
      heading: `*Failed tasks* (${count("failedTasks")})`,
      total: digestTotal(input, "failedTasks"),
      lines: input.failedTasks.map((f) => ({
        text: `*${typedText(f.title, 200)}* · failed ${when(f.failedAt)}${f.reason ? `: ${clip(f.reason, 300)}` : ""}`,
        link: f.link,
      })),
    },
  ];
  return all.filter((part) => part.lines.length > 0);
}

const TITLES: Record<DigestInput["audience"], string> = {
  channel: "Baton daily digest",
  owner: "Your Baton digest",
  lane: "Baton digest: work this channel owns",
};

function title(input: DigestInput): string {
  return TITLES[input.audience] ?? TITLES.channel;
}

const ALL_CLEAR = "✅ All clear: no idle tasks, no approvals waiting too long, no failed tasks.";

/**
 * Blocks for the channel post and for each owner's direct message. Each part gets an equal share
 * of the message's text budget, so a long first list cannot push the failed tasks out.
 */
export function digestMessage(input: DigestInput): SlackMessage {
  const blocks: Block[] = [header(title(input)), context([`As of ${when(input.asOf)}`])];
  const found = parts(input);
  if (found.length === 0) blocks.push(section(ALL_CLEAR));
  const headed = found.map((part) => ({ part, heading: section(part.heading) }));
  const fixed = blocksTextLength([...blocks, ...headed.map(({ heading }) => heading)]);
  const share = Math.floor((BLOCKS_TEXT_BUDGET - fixed) / Math.max(1, found.length));
  for (const { part, heading } of headed) blocks.push(divider(), heading, ...rows(part, share));
  return message(fallback(summary(input)), blocks);
}

/** A part's first rows that fit `share` characters, and a line counting the others. */
function rows(part: Part, share: number): Block[] {
  const room = share - MORE_LINE_MAX;
  const shown: Block[] = [];
  let used = 0;
  for (const line of part.lines.slice(0, BLOCK_ROWS)) {
    const row = section(line.text, openButton(line.link));
    const size = blocksTextLength([row]);
    if (used + size > room) break;
    shown.push(row);
    used += size;
  }
  const more = moreText(part.total.count - shown.length, part.total.atLeast);
  if (more) shown.push(context([more]));
  return shown;
}

function countText(total: DigestTotal): string {
  return `${total.count}${total.atLeast ? "+" : ""}`;
}

/** Only a count that is known is given as the number not shown; a floor says so. */
function moreText(hidden: number, atLeast: boolean): string | undefined {
  if (atLeast) return hidden > 0 ? `At least ${hidden} more not shown.` : "More not shown.";
  return hidden > 0 ? `+${hidden} more not shown.` : undefined;
}

function summary(input: DigestInput): string {
  if (isDigestEmpty(input)) return `${title(input)}: all clear`;
  const count = (list: DigestList) => countText(digestTotal(input, list));
  return `${title(input)}: ${count("staleTasks")} idle tasks, ${count("staleApprovals")} waiting approvals, ${count("failedTasks")} failed tasks`;
}

/** The digest's dates are ISO strings (it is stored as JSON); a bad one reads "an unknown time". */
function when(iso: string): string {
  return slackDate(new Date(iso));
}

function ownerText(owner: DigestTaskItem["owner"]): string {
  // Several owners are one id list ("U0ANN,U0BOB"): each is mentioned.
  return owner.kind === "human"
    ? owner.id.split(",").map(mention).join(", ")
    : clip(owner.name ?? owner.id, 80);
}

function openButton(link: string | undefined): Button | undefined {
  const url = safeUrl(link);
  return url ? button({ text: "Open thread", actionId: DIGEST_OPEN_LINK, url }) : undefined;
}
