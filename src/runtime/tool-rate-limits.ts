import type { ToolRateLimit } from "../config/agents-schema.ts";
import type { Action } from "../core/dispatch.ts";
import { duration } from "../core/duration.ts";
import type { ToolDefinition } from "../core/tools/tool.ts";
import type { Tx } from "../db/database.ts";
import type { ToolCallRecord } from "../db/ledger.repository.ts";
import { lockRateLimit, toolRunsWithin } from "../db/rate-limits.repository.ts";
import type { RuntimeDeps } from "./deps.ts";
import { toolMessage } from "./messages.ts";
import type { TurnEffects } from "./turn.ts";

export function rateLimitOf(deps: RuntimeDeps, tool: ToolDefinition): ToolRateLimit | undefined {
  return deps.agents.file.policies.rate_limits.tools.find((l) => l.tool === tool.name);
}

/**
 * Whether the tool ran (or waits on an approval) `max` times in the last `per` already, this
 * turn's calls included. The limit is held until the turn commits, so replicas count in turn.
 * A call a person approves later runs then: the person's decision is the exception.
 */
export async function overRateLimit(fx: TurnEffects, limit: ToolRateLimit): Promise<boolean> {
  const { tx } = fx;
  // writesBeforeTurn sends a rate-limited call down the locked path: this is its transaction.
  if (!tx.isTransaction) throw new Error(`a call of ${limit.tool} must run in a transaction`);
  // Every limited tool of the reply, in name order: two turns calling two limited tools in
  // opposite orders would otherwise wait on each other. A lock this transaction holds is taken
  // again at once.
  const limited = fx.turn.actions.flatMap((a) =>
    a.kind === "tool" && rateLimitOf(fx.deps, a.tool) ? [a.tool.name] : [],
  );
  for (const name of [...new Set(limited)].sort()) await lockRateLimit(tx as Tx, `tool:${name}`);
  const thisTurn = fx.toolCalls.filter((c) => c.tool === limit.tool && c.status === "done");
  return (await toolRunsWithin(tx as Tx, limit.tool, limit.per)) + thisTurn.length >= limit.max;
}

/** Refused like a tool outside the allowlist: recorded, audited, and the model told what to do. */
export function refuseOverLimit(
  fx: TurnEffects,
  action: Extract<Action, { kind: "tool" }>,
  limit: ToolRateLimit,
  base: Omit<ToolCallRecord, "status" | "result" | "allowedBy">,
): void {
  const { task, agent } = fx.turn;
  const error = `Not run: ${limit.tool} may run at most ${limit.max === 1 ? "once" : `${limit.max} times`} in ${duration(limit.per)}, and it has; nothing will run it later by itself. Do not call it again now: tell the requester it was not done and that they can ask again later, or hand the task to a person.`;
  // Counted as an unusable reply, so a model that keeps calling it stops within three.
  fx.modelErrors++;
  fx.toolCalls.push({ ...base, status: "rate_limited", result: { error }, allowedBy: null });
  fx.conversation.push(toolMessage(action.callId, { error }));
  fx.audits.push({
    taskId: task.id,
    actor: { kind: "agent", id: agent.id },
    kind: "tool_refused",
    data: {
      tool: limit.tool,
      reason: "rate_limited",
      message: error,
      args: action.args,
      step: fx.stepNo,
    },
  });
  fx.afterCommit.push(() =>
    fx.deps.metrics.toolCalls.inc({ tool: limit.tool, outcome: "rate_limited" }),
  );
}
