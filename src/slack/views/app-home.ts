import { clip, isUserId, mention, orElse, slackDate, truncate } from "../mrkdwn.ts";
import { typedText } from "../typed-text.ts";
import {
  type Block,
  type Button,
  button,
  context,
  divider,
  type HomeView,
  header,
  safeUrl,
  section,
} from "./blocks.ts";

/** Link buttons still send an interaction payload: the app acks this action_id and does nothing. */
export const HOME_OPEN_LINK = "home_open_link";

export interface HomeTask {
  taskId: string;
  title: string;
  /** Display name of the agent or person who owns it now. */
  ownerName: string;
  /** A person's or group's Slack ids, shown as mentions instead of ownerName. */
  ownerIds?: string[];
  /** In words ("waiting on a person"), not the task's status code. */
  status: string;
  updatedAt: Date;
  permalink?: string;
}

export interface HomeApproval {
  approvalId: string;
  toolName: string;
  agentName: string;
  summary: string;
  requestedAt: Date;
  permalink?: string;
}

export interface HomeDecision {
  approvalId: string;
  toolName: string;
  decision: "approved" | "rejected" | "expired" | "escalated";
  at: Date;
  reason?: string;
}

export interface AppHomeInput {
  userId: string;
  /** All of them, when openTasks holds only the first rows. */
  openTaskCount?: number;
  waitingApprovalCount?: number;
  openTasks: HomeTask[];
  waitingApprovals: HomeApproval[];
  recentDecisions: HomeDecision[];
}

// A home view holds 100 blocks: 30 + 30 one-block rows plus the fixed blocks stay well inside it.
const TASKS_SHOWN = 30;
const APPROVALS_SHOWN = 30;
// Ten short lines fit one 3,000-char section.
const DECISIONS_SHOWN = 10;

export function appHome(input: AppHomeInput): HomeView {
  const openTasks = Math.max(input.openTaskCount ?? 0, input.openTasks.length);
  const approvals = Math.max(input.waitingApprovalCount ?? 0, input.waitingApprovals.length);
  const who = isUserId(input.userId) ? `Hi ${mention(input.userId)}. ` : "";
  const blocks: Block[] = [
    header("Baton"),
    context([`${who}Your open tasks, the approvals waiting for you and what you decided lately.`]),
    divider(),
    header(`Your open tasks (${openTasks})`),
    ...list(input.openTasks, openTasks, TASKS_SHOWN, taskRow, "open tasks", "No open tasks. 🎉"),
    divider(),
    header(`Waiting for your approval (${approvals})`),
    ...list(
      input.waitingApprovals,
      approvals,
      APPROVALS_SHOWN,
      approvalRow,
      "approvals",
      "Nothing waits for you.",
    ),
    divider(),
    header("Your recent decisions"),
    decisionsBlock(input.recentDecisions),
  ];
  return { type: "home", blocks };
}

function list<T>(
  items: T[],
  total: number,
  max: number,
  row: (item: T) => Block,
  noun: string,
  empty: string,
): Block[] {
  if (items.length === 0) return [context([empty])];
  const blocks = items.slice(0, max).map(row);
  if (total > max) blocks.push(context([`+${total - max} more ${noun} not shown.`]));
  return blocks;
}

function taskRow(task: HomeTask): Block {
  const title = orElse(typedText(task.title, 300), "(untitled)");
  const owner = task.ownerIds?.length
    ? task.ownerIds.slice(0, 5).map(mention).join(", ")
    : clip(task.ownerName, 80);
  const meta = `${owner} · ${clip(task.status, 40)} · updated ${slackDate(task.updatedAt)}`;
  return section(`*${title}*\n${meta}`, openButton(task.permalink, "Open thread"));
}

function approvalRow(approval: HomeApproval): Block {
  const head = `*${clip(approval.toolName, 100)}* for *${clip(approval.agentName, 80)}*`;
  const body = `${typedText(approval.summary, 1000)}\nRequested ${slackDate(approval.requestedAt)}`;
  return section(`${head}\n${body}`, openButton(approval.permalink, "Open card"));
}

const DECISION_ICON: Record<HomeDecision["decision"], string> = {
  approved: "✅ Approved",
  rejected: "❌ Rejected",
  expired: "⌛ Expired",
  escalated: "⤴️ Escalated",
};

/** One section for all recent decisions: they are short and this keeps the block count flat. */
function decisionsBlock(decisions: HomeDecision[]): Block {
  if (decisions.length === 0) return context(["No decisions yet."]);
  const lines = decisions.slice(0, DECISIONS_SHOWN).map((d) => {
    const what = `${DECISION_ICON[d.decision] ?? clip(d.decision, 20)} \`${clip(d.toolName, 60)}\` ${slackDate(d.at)}`;
    return d.reason ? `${what}: ${clip(d.reason, 120)}` : what;
  });
  return section(truncate(lines.join("\n"), 3000));
}

function openButton(permalink: string | undefined, label: string): Button | undefined {
  const url = safeUrl(permalink);
  return url ? button({ text: label, actionId: HOME_OPEN_LINK, url }) : undefined;
}
