import type { TurnRecords } from "../db/turn-records.repository.ts";
import type { TurnEffects } from "./turn.ts";

/** What one turn decided, as the records its statement writes (and the lease it checks). */
export function turnRecords(fx: TurnEffects): TurnRecords {
  const { task, agent, reply } = fx.turn;
  // This stint's new messages and, after a handoff, the next stint's first, in one insert.
  const rows = fx.conversation.map((message) => ({
    taskId: task.id,
    stintNo: task.stint_no,
    stepNo: fx.stepNo,
    message,
  }));
  if (fx.nextStint)
    rows.push({
      taskId: task.id,
      stintNo: task.stint_no + 1,
      stepNo: fx.stepNo,
      message: fx.nextStint,
    });
  return {
    taskId: task.id,
    changes: fx.changes,
    modelCall: {
      taskId: task.id,
      stepNo: fx.stepNo,
      agentId: agent.id,
      model: reply.model || agent.model,
      promptTokens: reply.usage.promptTokens,
      completionTokens: reply.usage.completionTokens,
      costUsd: fx.changes.addCostUsd ?? 0,
      latencyMs: Math.round(fx.turn.latencyMs),
      requestChars: fx.turn.requestChars,
      outcome: fx.turn.actions.map((a) => a.kind).join(","),
      usageEstimated: reply.usage.estimated === true,
    },
    conversation: rows,
    toolCalls: fx.toolCalls,
    handoffs: fx.handoffs,
    audits: fx.audits,
    outbox: fx.outbox,
    delivered: fx.turn.delivered,
    ...(fx.turn.firstOfStint && { arrivalsOf: agent.id }),
    lease: {
      expectedStep: task.step_no,
      expectedOwner: task.owner_id,
      expectedStint: task.stint_no,
      worker: fx.deps.workerId,
      ms: fx.deps.leaseMs,
    },
  };
}
