import type { Agent } from "../core/agents/directory.ts";
import type { Action } from "../core/dispatch.ts";
import type { ChatMessage } from "../core/model.ts";
import { countsEarlierCalls, type Gate, gateAfterRejection, gateFor } from "../core/policy.ts";
import type { ChatIntent } from "../core/ports.ts";
import { argumentNames } from "../core/tools/builtin.ts";
import { type ToolDefinition, ToolInputError } from "../core/tools/tool.ts";
import * as approvalsDb from "../db/approvals.repository.ts";
import type { Executor } from "../db/database.ts";
import { countedCallArgs, insertToolCall, type ToolCallRecord } from "../db/ledger.repository.ts";
import type { Metrics } from "../metrics.ts";
import { requestApproval } from "./approval-requests.ts";
import type { RuntimeDeps } from "./deps.ts";
import { personaOf, post, toolMessage } from "./messages.ts";
import { overRateLimit, rateLimitOf, refuseOverLimit } from "./tool-rate-limits.ts";
import type { TurnEffects } from "./turn.ts";

type ToolAction = Extract<Action, { kind: "tool" }>;
type CallBase = Omit<ToolCallRecord, "status" | "result" | "allowedBy">;

/**
 * Runs, proposes (shadow) or parks (approval) one allowed tool call. A run tool's effect and the
 * record of the call commit in the same transaction, so a crash can never leave one without the other.
 */
export async function runToolAction(
  fx: TurnEffects,
  action: ToolAction,
  index: number,
): Promise<boolean> {
  const base = callBase(fx, action, index);
  const gate = await gateOf(fx, action);
  // A shadow agent's proposal runs nothing, so the real tool's limit does not apply to it.
  const limit = gate.kind === "shadow" ? undefined : rateLimitOf(fx.deps, action.tool);
  if (limit && (await overRateLimit(fx, limit))) {
    refuseOverLimit(fx, action, limit, base);
    return false;
  }
  if (gate.kind === "approval") {
    await parkForApproval(fx, action, base, gate);
    return true;
  }
  if (gate.kind === "shadow") await proposeInShadow(fx, action, base);
  else await runCall(fx, action, base);
  return false;
}

/**
 * The call's record before its outcome. Its key is its place in the step's reply, so a retry that
 * replays the reply calls again under the same key.
 */
function callBase(fx: TurnEffects, action: ToolAction, index: number): CallBase {
  const { task, agent } = fx.turn;
  return {
    taskId: task.id,
    stepNo: fx.stepNo,
    agentId: agent.id,
    tool: action.tool.name,
    toolClass: action.tool.toolClass,
    args: action.args,
    idempotencyKey: `${task.id}:${fx.stepNo}:${index}`,
  };
}

async function parkForApproval(
  fx: TurnEffects,
  action: ToolAction,
  base: CallBase,
  gate: Extract<Gate, { kind: "approval" }>,
): Promise<void> {
  const { task, agent } = fx.turn;
  await insertToolCall(fx.tx, {
    ...base,
    status: "pending_approval",
    result: null,
    allowedBy: null,
  });
  await requestApproval(
    { ...fx, task, agent },
    { callId: action.callId, key: base.idempotencyKey, tool: action.tool, args: action.args, gate },
  );
}

async function proposeInShadow(fx: TurnEffects, action: ToolAction, base: CallBase): Promise<void> {
  const { task, agent } = fx.turn;
  await insertToolCall(fx.tx, { ...base, status: "shadowed", result: null, allowedBy: null });
  fx.conversation.push(
    toolMessage(action.callId, {
      not_run:
        "Shadow mode: this call was shown to people as a proposal and not run. Carry on as if it was not done.",
    }),
  );
  fx.outbox.push(post(task, shadowCard(fx, action, base.idempotencyKey)));
  fx.audits.push({
    taskId: task.id,
    actor: { kind: "agent", id: agent.id },
    kind: "tool_shadowed",
    data: { tool: action.tool.name, args: action.args },
  });
}

function shadowCard(fx: TurnEffects, action: ToolAction, key: string): ChatIntent {
  const { task, agent } = fx.turn;
  return {
    kind: "approval_card",
    channel: task.channel_id,
    threadTs: task.thread_ts,
    persona: personaOf(agent),
    approval: {
      approvalId: key,
      agentName: agent.name,
      toolName: action.tool.name,
      args: action.args as Record<string, unknown>,
      argOrder: argumentNames(action.tool),
      requesterId: task.requester_id,
      approvers: { users: [], groups: [] },
      expiresAt: fx.deps.clock.now().toISOString(),
      shadow: true,
      state: { status: "pending" },
    },
  };
}

async function runCall(fx: TurnEffects, action: ToolAction, base: CallBase): Promise<void> {
  const { task, agent } = fx.turn;
  const key = base.idempotencyKey;
  const allowedBy = action.tool.toolClass === "read" ? "policy:read" : `policy:${agent.autonomy}`;
  const outcome = await executeTool(
    fx.tx,
    action.tool,
    action.args,
    { idempotencyKey: key, taskId: task.id, agentId: agent.id },
    fx.deps.metrics,
  );
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
}

/**
 * A write the reply already called with the same arguments (see dispatch's withRepeats): not run
 * again, and answered with the first call's result, as Chat Completions wants every call answered.
 */
export function answerRepeat(fx: TurnEffects, action: Extract<Action, { kind: "repeat" }>): void {
  const { task, agent } = fx.turn;
  const first = fx.conversation.find(
    (m): m is Extract<ChatMessage, { role: "tool" }> =>
      m.role === "tool" && m.tool_call_id === action.of,
  );
  // A first call parked on an approval is answered when a person decides. The first may not have
  // run either (a shadow agent's, one over a rate limit): its own answer says what became of it.
  const answer = first
    ? { note: `its answer stands`, result: jsonOrText(first.content) }
    : { note: `it is answered when a person decides` };
  fx.conversation.push(
    toolMessage(action.callId, {
      repeat_of: action.of,
      note: `The same call as ${action.of} in this reply, so not repeated: ${answer.note}.`,
      ...("result" in answer && { result: answer.result }),
    }),
  );
  fx.audits.push({
    taskId: task.id,
    actor: { kind: "agent", id: agent.id },
    kind: "tool_call_repeated",
    data: { tool: action.name, call_id: action.callId, repeat_of: action.of },
  });
}

/** A tool message's content: JSON, unless it was cut to size. */
function jsonOrText(content: string): unknown {
  try {
    return JSON.parse(content);
  } catch {
    return content;
  }
}

/** The policy's gate, and after a person rejected a call of the tool in this task, a person again. */
async function gateOf(fx: TurnEffects, action: ToolAction): Promise<Gate> {
  const { task, agent } = fx.turn;
  const earlier = await earlierCalls(fx, action);
  const gate = gateFor(agent, action.tool, action.args, fx.deps.agents.file, earlier);
  // A write that would run goes down the locked path (writesBeforeTurn): this read is in its
  // transaction, so a rejection committed before the turn's lock is seen.
  if (gate.kind !== "run" || action.tool.toolClass === "read") return gate;
  const rejected = await approvalsDb.lastRejected(fx.tx, task.id, action.tool.name);
  if (!rejected) return gate;
  const window = rejected.expires_at.getTime() - rejected.created_at.getTime();
  return gateAfterRejection(
    { policyId: rejected.policy_id, approvers: rejected.approvers, expiresAfterMs: window },
    fx.deps.agents.file,
  );
}

/**
 * The arguments of the tool's calls in this task that a threshold counts (see `countedCallArgs`),
 * this turn's runs included: they are written with the turn's statement. Only for a tool with a
 * threshold, the one case that reads them: any other call costs no round trip. A threshold is on
 * a write, so this is the locked path's transaction (writesBeforeTurn): a run of the task that
 * committed a call before this turn took the lock is counted, and none commits one meanwhile.
 */
async function earlierCalls(fx: TurnEffects, action: ToolAction): Promise<unknown[]> {
  const { task, agent } = fx.turn;
  if (!countsEarlierCalls(agent, action.tool, fx.deps.agents.file)) return [];
  if (!fx.tx.isTransaction)
    throw new Error(`a call of ${action.tool.name} must run in a transaction`);
  const thisTurn = fx.toolCalls.filter((c) => c.tool === action.tool.name && c.status === "done");
  return [
    ...(await countedCallArgs(fx.tx, task.id, action.tool.name)),
    ...thisTurn.map((c) => c.args),
  ];
}

/**
 * Whether running this call writes before the turn's own statement (a write tool's effect, a
 * parked or shadowed call's rows), so the turn must lock the task and commit in one transaction.
 * A read tool that runs only reads.
 */
export function writesBeforeTurn(deps: RuntimeDeps, agent: Agent, action: ToolAction): boolean {
  return (
    action.tool.toolClass !== "read" ||
    rateLimitOf(deps, action.tool) !== undefined ||
    gateFor(agent, action.tool, action.args, deps.agents.file).kind !== "run"
  );
}

/**
 * A tool's own refusal (order not found, ...) goes back to the model; anything else aborts the turn.
 * Its time is measured by outcome: an HTTP tool's endpoint is often the slow part of a turn.
 */
export async function executeTool(
  tx: Executor,
  tool: ToolDefinition,
  args: unknown,
  ctx: { idempotencyKey: string; taskId: string; agentId: string },
  metrics: Pick<Metrics, "toolLatency">,
): Promise<{ status: "done" | "failed"; result: unknown }> {
  const started = performance.now();
  const took = (outcome: string) =>
    metrics.toolLatency.observe({ tool: tool.name, outcome }, (performance.now() - started) / 1000);
  try {
    const result = await tool.run({ tx, ...ctx }, args);
    took("done");
    return { status: "done", result };
  } catch (error) {
    took(error instanceof ToolInputError ? "failed" : "error");
    if (error instanceof ToolInputError)
      return { status: "failed", result: { error: error.message } };
    throw error;
  }
}
