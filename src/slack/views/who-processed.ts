import { argsText } from "../../core/audit-words.ts";
import type { ProcessedCall } from "../../db/reports.repository.ts";
import { clip, isUserId, mention, slackDate } from "../mrkdwn.ts";
import { allowedWords } from "./audit-story.ts";

/**
 * `/baton who`'s answer: one line a call, naming the agent and whoever decided as people read them
 * (names, mentions, dates in the reader's time zone), never the ledger's ids.
 */

/** Short of Slack's 3,000 for a section, so the line after it (what is withheld) still shows. */
const ANSWER_MAX = 2_800;
const MORE_MAX = 120;

const NOT_RUN: Record<string, string> = {
  rejected: "not run",
  expired: "not run: nobody decided in time",
  withdrawn: "not run: the task stopped first",
  not_run: "not run: the agents file changed before it could",
  pending_approval: "waiting for a person's approval",
  shadowed: "proposed in shadow mode, not run",
  rate_limited: "refused: over its rate limit",
};

export function whoProcessedWords(
  calls: readonly ProcessedCall[],
  tool: string | undefined,
  agentName: (id: string) => string,
): string {
  if (calls.length === 0) return `No ${clip(tool ?? "write", 100)} tool calls for this reference.`;
  const lines: string[] = [];
  let used = 0;
  for (const call of calls) {
    const line = callLine(call, agentName);
    if (used + line.length + 1 > ANSWER_MAX - MORE_MAX) break;
    lines.push(line);
    used += line.length + 1;
  }
  const hidden = calls.length - lines.length;
  if (hidden > 0) lines.push(`+${hidden} more not shown: \`/baton audit\` tells the whole story.`);
  return lines.join("\n");
}

function callLine(call: ProcessedCall, agentName: (id: string) => string): string {
  const args = clip(argsText(call.args), 400);
  const head = `• ${slackDate(call.at)} *${clip(agentName(call.agentId), 80)}* called \`${clip(call.tool, 100)}\`${args ? ` (${args})` : ""}`;
  return `${head}: ${outcome(call)}`;
}

function outcome(call: ProcessedCall): string {
  const status = NOT_RUN[call.status] ?? clip(call.status, 40);
  const by = call.approver && isUserId(call.approver) ? mention(call.approver) : undefined;
  const when = call.decidedAt ? ` ${slackDate(call.decidedAt)}` : "";
  if (by && call.decision === "approved") return `${status}, approved by ${by}${when}`;
  if (by && call.decision === "rejected") {
    const reason = call.reason ? `: "${clip(call.reason, 300)}"` : "";
    return `${status}, rejected by ${by}${when}${reason}`;
  }
  // Allowed by a policy that needed nobody: said as the audit story says it.
  return call.allowedBy?.startsWith("policy:")
    ? `${status}, ${allowedWords(call.allowedBy, "")}`
    : status;
}
