import type { Agent } from "../core/agents/directory.ts";
import type { Action } from "../core/dispatch.ts";
import { type ChatMessage, costUsd, type ModelReply } from "../core/model.ts";
import type { Executor } from "../db/database.ts";
import type { HandoffRecord, ToolCallRecord } from "../db/ledger.repository.ts";
import type { Arrival } from "../db/metrics.repository.ts";
import type { Delivered, OutboxMessage } from "../db/outbox.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import { consumeInputs, lockTaskForTurn } from "../db/tasks.repository.ts";
import { isTurnMovedOn, writeTurn } from "../db/turn-records.repository.ts";
import type { RuntimeDeps } from "./deps.ts";
import type { AgentEffects } from "./effects.ts";
import { assistantMessage, toolMessage } from "./messages.ts";
import { writesBeforeTurn } from "./tool-actions.ts";
import { applyAction, settleModelErrors } from "./turn-actions.ts";

/** "said": the turn committed something to say in Slack, posted in order while the next turn runs. */
export type TurnOutcome = "continue" | "said" | "idle";

/** What the next turn reads: the task and its current stint's conversation. */
export interface TurnState {
  task: TaskRow;
  history: ChatMessage[];
}

export interface CommittedTurn {
  outcome: TurnOutcome;
  /** False when another worker committed this step first and the turn was dropped. */
  written: boolean;
  /** The state after this turn, when nothing else (a person's reply) needs reading first. */
  next: TurnState | undefined;
  /** What this turn has to say in Slack, with its outbox row ids. */
  outbox: { id: string; message: OutboxMessage }[];
}

class TurnDropped extends Error {}

export interface Turn {
  task: TaskRow;
  agent: Agent;
  reply: ModelReply;
  actions: Action[];
  inputIds: string[];
  newMessages: ChatMessage[];
  latencyMs: number;
  requestChars: number;
  /** The agent's first turn since the work came to it, or since a human decided (latency is measured there). */
  firstOfStint: boolean;
  /** The stint's conversation before this turn (the next turn's history continues it). */
  history: readonly ChatMessage[];
  /** Outbox rows delivered since the last turn, marked sent in this turn's transaction. */
  delivered: readonly Delivered[];
}

/** Everything one turn decides, written in one transaction at the end. */
export interface TurnEffects extends AgentEffects {
  turn: Turn;
  conversation: ChatMessage[];
  nextStint: ChatMessage | undefined;
  toolCalls: ToolCallRecord[];
  handoffs: HandoffRecord[];
  modelErrors: number;
}

export async function commitTurn(deps: RuntimeDeps, turn: Turn): Promise<CommittedTurn> {
  const { task, agent, reply } = turn;
  const stepNo = task.step_no + 1;
  const cost = costUsd(reply.model || agent.model, reply.usage);
  const after: (() => void)[] = [];
  // Write tools, approvals, escalations and consumed replies write before the turn's own
  // statement, so the task is locked first and all of it commits together: a worker whose lease
  // ran out mid-call waits there, then drops its turn. A turn that only reads, answers or hands
  // over writes nothing before that statement, which checks the step itself: no transaction.
  const writesFirst =
    turn.inputIds.length > 0 ||
    turn.actions.some(
      (a) => a.kind === "escalate" || (a.kind === "tool" && writesBeforeTurn(deps, agent, a)),
    );
  const inTransaction = (
    write: (executor: Executor, last: boolean) => Promise<CommittedTurn | undefined>,
  ) =>
    deps.db.transaction().execute(async (tx) => {
      const locked = await lockTaskForTurn(tx, task.id, task.step_no, deps.workerId, deps.leaseMs);
      // Another worker committed this step first (a lease ran out mid-call): drop this turn.
      if (locked?.status !== "active" || locked.owner_kind !== "agent") return undefined;
      await consumeInputs(tx, turn.inputIds, stepNo);
      // The turn's statement goes out with the COMMIT.
      return write(tx, true);
    });
  const write = async (executor: Executor, last: boolean): Promise<CommittedTurn | undefined> => {
    const fx: TurnEffects = {
      tx: executor,
      deps,
      task,
      agent,
      turn,
      stepNo,
      conversation: [...turn.newMessages, assistantMessage(reply)],
      nextStint: undefined,
      changes: {
        stepNo,
        addTokens: reply.usage.promptTokens + reply.usage.completionTokens,
        addCostUsd: cost,
      },
      toolCalls: [],
      handoffs: [],
      audits: [],
      outbox: [],
      modelErrors: 0,
      afterCommit: after,
    };
    let ended = false;
    for (const [index, action] of turn.actions.entries()) {
      if (ended) {
        if ("callId" in action)
          fx.conversation.push(toolMessage(action.callId, { error: "not run: the task moved on" }));
        continue;
      }
      ended = await applyAction(fx, action, index);
    }
    settleModelErrors(fx);
    // This stint's new messages and, after a handoff, the next stint's first, in one insert.
    const rows = fx.conversation.map((message) => ({
      taskId: task.id,
      stintNo: task.stint_no,
      stepNo,
      message,
    }));
    if (fx.nextStint)
      rows.push({ taskId: task.id, stintNo: task.stint_no + 1, stepNo, message: fx.nextStint });
    const written = await writeTurn(
      executor,
      {
        taskId: task.id,
        changes: fx.changes,
        modelCall: {
          taskId: task.id,
          stepNo,
          agentId: agent.id,
          model: reply.model || agent.model,
          promptTokens: reply.usage.promptTokens,
          completionTokens: reply.usage.completionTokens,
          costUsd: cost,
          latencyMs: Math.round(turn.latencyMs),
          requestChars: turn.requestChars,
          outcome: turn.actions.map((a) => a.kind).join(","),
        },
        conversation: rows,
        toolCalls: fx.toolCalls,
        handoffs: fx.handoffs,
        audits: fx.audits,
        outbox: fx.outbox,
        delivered: turn.delivered,
        ...(turn.firstOfStint && { arrivalsOf: agent.id }),
        lease: { expectedStep: task.step_no, worker: deps.workerId, ms: deps.leaseMs },
      },
      { last },
    );
    // The step moved on under this turn: drop it, and roll back what it wrote before.
    if (!written) throw new TurnDropped();
    after.push(() => observeArrivals(deps, agent.id, written.arrivals));
    if (fx.changes.status === "done") {
      const tokens = written.task.tokens;
      const usd = Number(written.task.cost_usd);
      after.push(() => {
        deps.metrics.completedTaskTokens.observe(tokens);
        deps.metrics.completedTaskCost.observe(usd);
      });
    }
    const next: TurnState | undefined = written.hasNewInputs
      ? undefined
      : {
          task: written.task,
          history: fx.nextStint ? [fx.nextStint] : [...turn.history, ...fx.conversation],
        };
    return {
      outcome: fx.outbox.length > 0 ? ("said" as const) : ("continue" as const),
      written: true,
      next,
      outbox: fx.outbox.map((message, i) => ({ id: written.outboxIds[i] ?? "", message })),
    };
  };
  const committed = await (writesFirst ? inTransaction(write) : write(deps.db, false)).catch(
    (error: unknown) => {
      if (error instanceof TurnDropped || isTurnMovedOn(error)) return undefined;
      throw error;
    },
  );
  if (!committed) return { outcome: "continue", written: false, next: undefined, outbox: [] };
  deps.metrics.modelTokens.inc({ agent: agent.id, direction: "prompt" }, reply.usage.promptTokens);
  deps.metrics.modelTokens.inc(
    { agent: agent.id, direction: "completion" },
    reply.usage.completionTokens,
  );
  deps.metrics.modelCostUsd.inc({ agent: agent.id }, cost);
  deps.metrics.modelLatency.observe({ agent: agent.id }, turn.latencyMs / 1000);
  for (const effect of after) effect();
  deps.log.debug(
    {
      taskId: task.id,
      threadTs: task.thread_ts,
      agent: agent.id,
      step: stepNo,
      actions: turn.actions.map((a) => a.kind),
    },
    "turn committed",
  );
  return committed;
}

/** Handoff latency: from each handoff to this agent until its first turn after it commits. */
function observeArrivals(deps: RuntimeDeps, agentId: string, arrivals: readonly Arrival[]): void {
  for (const arrival of arrivals) {
    deps.metrics.handoffLatency.observe({ kind: arrival.kind, to: agentId }, arrival.waitedSeconds);
    if (arrival.approval)
      deps.metrics.approvalDecisionWait.observe(
        { decision: arrival.approval.decision },
        arrival.approval.waitedSeconds,
      );
  }
}
