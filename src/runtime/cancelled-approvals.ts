import { toolWords } from "../core/tools/tool.ts";
import * as approvalsDb from "../db/approvals.repository.ts";
import { settleUndecided } from "./approval-deadline.ts";
import type { RuntimeDeps } from "./deps.ts";
import { deliverOutbox } from "./outbox.ts";

/**
 * Approvals the agents file in use would not run: a reload took the tool from the agent, or put
 * the agent in shadow mode, while a person was still to decide. Each is cancelled at once, the way
 * a click decides one (the same single-row claim, the same resumption), so its card loses its
 * buttons and says why, and its task carries on with the call not run.
 */

type ParkedCall = { tool: string; agent_id: string };

/** Why the agents file in use would not run the call now; undefined when it would. */
export type NotRunnable = "not_its_tool" | "shadow";

export function notRunnable(deps: RuntimeDeps, call: ParkedCall): NotRunnable | undefined {
  const agent = deps.agents.get(call.agent_id);
  if (!deps.tools.has(call.tool) || !agent?.tools.includes(call.tool)) return "not_its_tool";
  if (agent.autonomy === "shadow") return "shadow";
  return undefined;
}

/** The same, as the people asked read it: "the agents file no longer lets Billing issue a refund". */
function inWords(deps: RuntimeDeps, call: ParkedCall, why: NotRunnable): string {
  const agent = deps.agents.persona(call.agent_id).name;
  if (why === "shadow")
    return `the agents file put ${agent} in shadow mode, where it only proposes writes`;
  return `the agents file no longer lets ${agent} ${toolWords(deps.tools.get(call.tool) ?? { name: call.tool })}`;
}

/**
 * Cancels the approval if the agents file in use would not run its call and nobody decided it
 * first. True when this call cancelled it; its card's update goes out afterwards.
 */
export async function cancelIfNotRunnable(
  deps: RuntimeDeps,
  approval: ParkedCall & { id: string; task_id: string },
): Promise<boolean> {
  const why = notRunnable(deps, approval);
  if (!why) return false;
  const reason = inWords(deps, approval, why);
  // A click at the same moment takes the same row: whichever updates it first decides.
  if (!(await settleUndecided(deps, approval.id, "cancelled", reason))) return false;
  deps.log.info(
    { taskId: approval.task_id, approvalId: approval.id, tool: approval.tool, why },
    "an approval was cancelled: the agents file no longer lets its call run",
  );
  deps.afterwards.run("update the cancelled approval's card", () =>
    deliverOutbox(deps, { taskId: approval.task_id }),
  );
  return true;
}

/**
 * At a start or a reload: every approval still waiting whose call the file now in use would not
 * run, all judged by that file (a copy of the deps: another reload meanwhile swaps the process's).
 * Returns how many.
 */
export async function cancelNotRunnableApprovals(processDeps: RuntimeDeps): Promise<number> {
  const deps = { ...processDeps };
  let cancelled = 0;
  for (const approval of await approvalsDb.allPendingCalls(deps.db))
    if (await cancelIfNotRunnable(deps, approval)) cancelled++;
  return cancelled;
}
