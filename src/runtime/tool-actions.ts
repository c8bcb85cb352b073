import type { Agent } from "../core/agents/directory.ts";
import type { Action } from "../core/dispatch.ts";
import { gateFor } from "../core/policy.ts";
import { type ToolDefinition, ToolInputError } from "../core/tools/tool.ts";
import type { Executor } from "../db/database.ts";
import { insertToolCall } from "../db/ledger.repository.ts";
import { requestApproval } from "./approvals.ts";
import type { RuntimeDeps } from "./deps.ts";
import { personaOf, post, toolMessage } from "./messages.ts";
import type { TurnEffects } from "./turn.ts";

/**
 * Runs, proposes (shadow) or parks (approval) one allowed tool call. A run tool's effect and the
 * record of the call commit in the same transaction, so a crash can never leave one without the other.
 */
export async function runToolAction(
  fx: TurnEffects,
  action: Extract<Action, { kind: "tool" }>,
  index: number,
): Promise<boolean> {
  const { task, agent } = fx.turn;
  const key = `${task.id}:${fx.stepNo}:${index}`;
  const base = {
    taskId: task.id,
    stepNo: fx.stepNo,
    agentId: agent.id,
    tool: action.tool.name,
    toolClass: action.tool.toolClass,
    args: action.args,
    idempotencyKey: key,
  };
  const gate = gateFor(agent, action.tool, action.args, fx.deps.agents.file);

  if (gate.kind === "approval") {
    await insertToolCall(fx.tx, {
      ...base,
      status: "pending_approval",
      result: null,
      allowedBy: null,
    });
    await requestApproval(
      { ...fx, task, agent },
      { callId: action.callId, key, tool: action.tool, args: action.args, gate },
    );
    return true;
  }
  if (gate.kind === "shadow") {
    await insertToolCall(fx.tx, { ...base, status: "shadowed", result: null, allowedBy: null });
    fx.conversation.push(
      toolMessage(action.callId, {
        not_run:
          "Shadow mode: this call was shown to people as a proposal and not run. Carry on as if it was not done.",
      }),
    );
    fx.outbox.push(
      post(task, {
        kind: "approval_card",
        channel: task.channel_id,
        threadTs: task.thread_ts,
        persona: personaOf(agent),
        approval: {
          approvalId: key,
          agentName: agent.name,
          toolName: action.tool.name,
          args: action.args as Record<string, unknown>,
          requesterId: task.requester_id,
          approvers: { users: [], groups: [] },
          expiresAt: fx.deps.clock.now().toISOString(),
          shadow: true,
          state: { status: "pending" },
        },
      }),
    );
    fx.audits.push({
      taskId: task.id,
      actor: { kind: "agent", id: agent.id },
      kind: "tool_shadowed",
      data: { tool: action.tool.name, args: action.args },
    });
    return false;
  }
  const allowedBy = action.tool.toolClass === "read" ? "policy:read" : `policy:${agent.autonomy}`;
  const outcome = await executeTool(fx.tx, action.tool, action.args, {
    idempotencyKey: key,
    taskId: task.id,
    agentId: agent.id,
  });
  // Recorded by the turn's final statement, in the same transaction as the effect.
  fx.toolCalls.push({ ...base, status: outcome.status, result: outcome.result, allowedBy });
  fx.conversation.push(toolMessage(action.callId, outcome.result));
  fx.audits.push({
    taskId: task.id,
    actor: { kind: "agent", id: agent.id },
    kind: "tool_call",
    data: {
      tool: action.tool.name,
      class: action.tool.toolClass,
      args: action.args,
      status: outcome.status,
      result: outcome.result,
      allowed_by: allowedBy,
      idempotency_key: key,
    },
  });
  fx.afterCommit.push(() =>
    fx.deps.metrics.toolCalls.inc({ tool: action.tool.name, outcome: outcome.status }),
  );
  return false;
}

/**
 * Whether running this call writes before the turn's own statement (a write tool's effect, a
 * parked or shadowed call's rows), so the turn must lock the task and commit in one transaction.
 * A read tool that runs only reads.
 */
export function writesBeforeTurn(
  deps: RuntimeDeps,
  agent: Agent,
  action: Extract<Action, { kind: "tool" }>,
): boolean {
  return (
    action.tool.toolClass !== "read" ||
    gateFor(agent, action.tool, action.args, deps.agents.file).kind !== "run"
  );
}

/** A tool's own refusal (order not found, ...) goes back to the model; anything else aborts the turn. */
export async function executeTool(
  tx: Executor,
  tool: ToolDefinition,
  args: unknown,
  ctx: { idempotencyKey: string; taskId: string; agentId: string },
): Promise<{ status: "done" | "failed"; result: unknown }> {
  try {
    return { status: "done", result: await tool.run({ tx, ...ctx }, args) };
  } catch (error) {
    if (error instanceof ToolInputError)
      return { status: "failed", result: { error: error.message } };
    throw error;
  }
}
