import type { Agent } from "../core/agents/directory.ts";
import type { Action } from "../core/dispatch.ts";
import { type ChatMessage, costUsd, type ModelReply } from "../core/model.ts";
import type { Executor, StatementLane, Tx } from "../db/database.ts";
import type { HandoffRecord, ToolCallRecord } from "../db/ledger.repository.ts";
import type { Arrival } from "../db/metrics.repository.ts";
import type { OutboxMessage } from "../db/outbox.repository.ts";
import type { Delivered } from "../db/outbox-marks.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import { taskAfterTurn } from "../db/task-after-turn.ts";
import { lockTaskForTurn } from "../db/tasks.repository.ts";
import { consumeInputs, keepReply, type ReplayedReply } from "../db/turn-reads.repository.ts";
import { isTurnMovedOn, type WrittenTurn, writeTurn } from "../db/turn-records.repository.ts";
import { TransientError } from "../errors.ts";
import type { RuntimeDeps } from "./deps.ts";
import type { AgentEffects } from "./effects.ts";
import { assistantMessage, toolMessage } from "./messages.ts";
import { onLastStrike, settleModelErrors } from "./model-strikes.ts";
import { answerRepeat, writesBeforeTurn } from "./tool-actions.ts";
import { applyAction } from "./turn-actions.ts";
import { turnRecords } from "./turn-records.ts";

/** "said": the turn committed something to say in Slack, posted in order while the next turn runs. */
export type TurnOutcome = "continue" | "said" | "idle";

/** What the next turn reads: the task and its current stint's conversation. */
export interface TurnState {
  task: TaskRow;
  history: ChatMessage[];
  /** The reply a failed try of this step kept (it called a tool outside the database). */
  replay?: ReplayedReply;
}

export interface CommittedTurn {
  outcome: TurnOutcome;
  /**
   * The state after this turn, when nothing else (a person's reply) needs reading first. A turn
   * written behind gives the state its statement will return, before it has.
   */
  next: TurnState | undefined;
  /** What the turn's statement answered; a turn written behind answers while the next turn runs. */
  written: Promise<WrittenTurnResult>;
}

export interface WrittenTurnResult {
  /** False when another worker committed this step first and the turn was dropped. */
  written: boolean;
  /** A person replied: the next turn must read the task again. */
  hasNewInputs: boolean;
  /** What this turn has to say in Slack, with its outbox row ids. */
  outbox: { id: string; message: OutboxMessage }[];
}

/** A run's turns in flight on its statement lane (see run-task.ts). */
export interface TurnLane {
  statements: StatementLane;
  /** Waits for every turn written behind so far; false when one of them was dropped. */
  settled(): Promise<boolean>;
}

export const DROPPED: WrittenTurnResult = { written: false, hasNewInputs: false, outbox: [] };

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
  /** Keep the reply before the turn's tools run: one acts outside the database (see keepReply). */
  keepsReply: boolean;
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

/**
 * Commits one turn. A turn that writes before its own statement (write tools, approvals,
 * escalations, consumed replies) locks the task first and commits all of it in one transaction,
 * after every turn written behind it has answered. Any other turn is its one statement, which checks
 * the task's step itself: with a lane, it is written behind, and the next turn starts from the state
 * it will return while it travels (see turn-lane.ts).
 */
export async function commitTurn(
  deps: RuntimeDeps,
  turn: Turn,
  lane?: TurnLane,
): Promise<CommittedTurn> {
  const writesFirst =
    turn.inputIds.length > 0 ||
    onLastStrike(turn) ||
    turn.actions.some(
      (a) => a.kind === "escalate" || (a.kind === "tool" && writesBeforeTurn(deps, turn.agent, a)),
    );
  if (!writesFirst && lane) return commitBehind(deps, turn, lane);
  if (lane && !(await lane.settled()))
    return { outcome: "idle", next: undefined, written: Promise.resolve(DROPPED) };
  // Once the turns behind have landed, the task is at this turn's step: kept under it, the reply
  // is what a retry of this step replays, should a tool act outside and the turn then fail.
  const kept =
    !turn.keepsReply ||
    (await keepReply(deps.db, {
      taskId: turn.task.id,
      stintNo: turn.task.stint_no,
      stepNo: turn.task.step_no,
      reply: turn.reply,
      inputIds: turn.inputIds,
      latencyMs: turn.latencyMs,
    }));
  // Another run kept its reply for this step first (it took the task over while this one waited
  // on the model): this reply must not act. The retry replays that one.
  if (!kept)
    throw new TransientError("another run kept its reply for this step first; it is replayed");
  const committed = await commitInPlace(deps, turn, writesFirst);
  if (!committed)
    return { outcome: "continue", next: undefined, written: Promise.resolve(DROPPED) };
  const result = settleTurn(committed.fx, committed.row);
  const next = result.hasNewInputs
    ? undefined
    : { task: committed.row.task, history: nextHistory(committed.fx) };
  return { outcome: outcomeOf(committed.fx), next, written: Promise.resolve(result) };
}

/** The turn's statement goes out on the run's lane; the next turn starts from what it will return. */
async function commitBehind(deps: RuntimeDeps, turn: Turn, lane: TurnLane): Promise<CommittedTurn> {
  const fx = await prepareTurn(deps, turn, deps.db);
  const records = turnRecords(fx);
  const written = writeTurn(lane.statements, records).then((row) => settleTurn(fx, row));
  const next = {
    task: taskAfterTurn(turn.task, records, deps.clock.now()),
    history: nextHistory(fx),
  };
  return { outcome: outcomeOf(fx), next, written };
}

/** Writes the turn and waits for it: undefined when the step moved on and the turn was dropped. */
async function commitInPlace(deps: RuntimeDeps, turn: Turn, writesFirst: boolean) {
  const { task } = turn;
  const write = async (executor: Executor, last: boolean) => {
    const fx = await prepareTurn(deps, turn, executor);
    const row = await writeTurn(executor, turnRecords(fx), { last });
    // The step moved on under this turn: drop it, and roll back what it wrote before.
    if (!row) throw new TurnDropped();
    return { fx, row };
  };
  // Write tools and the rest write before the turn's statement, so the task is locked first: a
  // worker whose lease ran out mid-call waits there, then drops its turn.
  const locked = async (tx: Tx) => {
    const row = await lockTaskForTurn(tx, task.id, task.step_no, deps.workerId, deps.leaseMs);
    // Another worker committed this step first (a lease ran out mid-call): drop this turn.
    if (row?.status !== "active" || row.owner_kind !== "agent") return undefined;
    await consumeInputs(tx, turn.inputIds, task.step_no + 1);
    // The turn's statement goes out with the COMMIT.
    return write(tx, true);
  };
  return (writesFirst ? deps.db.transaction().execute(locked) : write(deps.db, false)).catch(
    (error: unknown) => {
      if (error instanceof TurnDropped || isTurnMovedOn(error)) return undefined;
      throw error;
    },
  );
}

/** Runs the reply's actions (tools through `executor`) and gathers what the turn will write. */
async function prepareTurn(
  deps: RuntimeDeps,
  turn: Turn,
  executor: Executor,
): Promise<TurnEffects> {
  const { task, agent, reply } = turn;
  const stepNo = task.step_no + 1;
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
      addCostUsd: costUsd(
        reply.model || agent.model,
        reply.usage,
        deps.agents.file.prices,
        agent.model,
      ),
    },
    toolCalls: [],
    handoffs: [],
    audits: [],
    outbox: [],
    modelErrors: 0,
    afterCommit: [],
  };
  let ended = false;
  let parked: string | undefined;
  for (const [index, action] of turn.actions.entries()) {
    if (ended) {
      if (action.kind === "repeat" && action.of === parked) answerRepeat(fx, action);
      // A call outside the agent's role is refused, and audited, wherever it sits in the reply.
      else if (action.kind === "rejected" || action.kind === "too_many")
        await applyAction(fx, action, index);
      else if ("callId" in action)
        fx.conversation.push(toolMessage(action.callId, { error: "not run: the task moved on" }));
      continue;
    }
    ended = await applyAction(fx, action, index);
    // A tool call that ends the turn waits on a person: its repeats are answered with it.
    if (ended && action.kind === "tool") parked = action.callId;
  }
  await settleModelErrors(fx);
  return fx;
}

function nextHistory(fx: TurnEffects): ChatMessage[] {
  return fx.nextStint ? [fx.nextStint] : [...fx.turn.history, ...fx.conversation];
}

/** "said" when the turn has something to post. */
function outcomeOf(fx: TurnEffects): TurnOutcome {
  return fx.outbox.length > 0 ? "said" : "continue";
}

/** After the turn's statement answered: its metrics and effects, and what the run does next. */
function settleTurn(fx: TurnEffects, row: WrittenTurn | undefined): WrittenTurnResult {
  if (!row) return DROPPED;
  const { deps, agent } = fx;
  const { reply } = fx.turn;
  observeArrivals(deps, agent.id, row.arrivals);
  if (fx.changes.status === "done") {
    deps.metrics.completedTaskTokens.observe(row.task.tokens);
    deps.metrics.completedTaskCost.observe(Number(row.task.cost_usd));
  }
  deps.metrics.modelTokens.inc({ agent: agent.id, direction: "prompt" }, reply.usage.promptTokens);
  deps.metrics.modelTokens.inc(
    { agent: agent.id, direction: "completion" },
    reply.usage.completionTokens,
  );
  deps.metrics.modelCostUsd.inc({ agent: agent.id }, fx.changes.addCostUsd ?? 0);
  deps.metrics.modelLatency.observe({ agent: agent.id }, fx.turn.latencyMs / 1000);
  for (const effect of fx.afterCommit) effect();
  deps.log.debug(
    {
      taskId: fx.task.id,
      threadTs: fx.task.thread_ts,
      agent: agent.id,
      step: fx.stepNo,
      actions: fx.turn.actions.map((a) => a.kind),
    },
    "turn committed",
  );
  return {
    written: true,
    hasNewInputs: row.hasNewInputs,
    outbox: fx.outbox.map((message, i) => ({ id: row.outboxIds[i] ?? "", message })),
  };
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
