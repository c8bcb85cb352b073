import type { AutonomyMode } from "../config/agents-schema.ts";
import type { AgentActivity } from "../db/agent-activity.repository.ts";
import { clip, truncate } from "./mrkdwn.ts";

/** Decisions on a supervised agent's writes before its approval rate says much. */
const ENOUGH_DECISIONS = 20;
/** Share of them approved above which running on its own is worth considering. */
const READY_SHARE = 0.95;
/** The answer at most: Slack takes 40,000 characters of text but advises 4,000. */
const REPORT_MAX = 4_000;
/** The line naming the agents left out. */
const NOT_SHOWN_MAX = 500;

interface AgentLine {
  id: string;
  name: string;
  autonomy: AutonomyMode;
}

const count = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/**
 * `/baton agents`: what each agent did in the window, from the ledger, and what its record says
 * about its next phase of autonomy (shadow → supervised → autonomous). The agents file decides;
 * this only shows the evidence.
 */
export function agentsReport(
  agents: readonly AgentLine[],
  activity: readonly AgentActivity[],
  windowDays: number,
): string {
  const byId = new Map(activity.map((a) => [a.agentId, a]));
  const lines = [`*Your agents, the last ${count(windowDays, "day")}*`];
  let used = lines[0]?.length ?? 0;
  for (const [i, agent] of agents.entries()) {
    const entry = agentEntry(agent, byId.get(agent.id));
    // Whole agents only, and room kept to name those that do not fit: none is cut off unsaid.
    const room = i < agents.length - 1 ? NOT_SHOWN_MAX + 1 : 0;
    if (used + 1 + entry.length + room > REPORT_MAX) {
      lines.push(notShown(agents.slice(i)));
      break;
    }
    lines.push(entry);
    used += 1 + entry.length;
  }
  return lines.join("\n");
}

function agentEntry(agent: AgentLine, a: AgentActivity | undefined): string {
  const head = [
    `• *${clip(agent.name, 80)}* · ${agent.autonomy}`,
    count(a?.modelCalls ?? 0, "model call"),
    ...(a && a.costUsd > 0
      ? [a.costUsd < 0.01 ? "under 0.01 USD" : `${a.costUsd.toFixed(2)} USD`]
      : []),
    ...(a?.escalations ? [count(a.escalations, "escalation")] : []),
  ].join(" · ");
  return [head, ...detail(agent.autonomy, a).map((line) => `   ${line}`)].join("\n");
}

/** The agents left out, by name, in NOT_SHOWN_MAX characters. */
function notShown(agents: readonly AgentLine[]): string {
  const head = `+${count(agents.length, "more agent")} not shown: `;
  const names = agents.map((a) => clip(a.name, 80)).join(", ");
  return `${head}${truncate(names, NOT_SHOWN_MAX - head.length)}`;
}

/** What became of approved writes that did not run: "(1 then refused by the tool)". */
function afterApproval(w: AgentActivity["writes"]): string {
  const notes = [
    ...(w.approvedFailed ? [`${w.approvedFailed} then refused by the tool`] : []),
    ...(w.approvedNotRun ? [`${w.approvedNotRun} not run: the agents file changed first`] : []),
  ];
  return notes.length ? ` (${notes.join(", ")})` : "";
}

/** The writes, and the hint for the next phase. */
function detail(autonomy: AutonomyMode, a: AgentActivity | undefined): string[] {
  const w = a?.writes;
  if (!w) return ["no writes"];
  const decided = w.approved + w.rejected + w.expired;
  const parts: string[] = [];
  if (w.ran) parts.push(`${w.ran} ran on its own`);
  const asked = decided + w.waiting + w.withdrawn + w.cancelled;
  if (asked) {
    const outcomes = [
      `${w.approved} approved${afterApproval(w)}`,
      ...(w.rejected ? [`${w.rejected} rejected`] : []),
      ...(w.expired ? [`${w.expired} expired`] : []),
      ...(w.waiting ? [`${w.waiting} waiting`] : []),
      ...(w.withdrawn ? [`${w.withdrawn} withdrawn (the task stopped first)`] : []),
      ...(w.cancelled ? [`${w.cancelled} cancelled (the agents file changed first)`] : []),
    ];
    parts.push(`${count(asked, "write")} asked a person: ${outcomes.join(", ")}`);
  }
  if (w.proposed) parts.push(`${count(w.proposed, "proposal")}, not run`);
  if (w.failed) parts.push(`${w.failed} refused by the tool or a rate limit`);
  const lines = [parts.length ? `writes: ${parts.join("; ")}` : "no writes"];
  if (autonomy === "shadow" && w.proposed)
    lines.push(
      "→ its proposals are on their threads' cards: if they were right, `autonomy: supervised` has a person approve each before it runs",
    );
  if (autonomy === "supervised" && decided >= ENOUGH_DECISIONS) {
    const share = w.approved / decided;
    // In integers: 58 / 100 * 100 is 57.99999999999999, and would be said as 57%.
    const approvedShare = `people approved ${Math.floor((w.approved * 100) / decided)}% of ${decided}`;
    lines.push(
      share >= READY_SHARE
        ? `→ ${approvedShare}: \`autonomy: autonomous\` may be next, with an approval policy for what people should still see`
        : `→ ${approvedShare}: keep it supervised, and read why people rejected its calls (each task's \`/baton audit\`)`,
    );
  }
  return lines;
}
