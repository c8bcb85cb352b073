import type { Agent } from "../core/agents/directory.ts";
import type { ChatMessage } from "../core/model.ts";
import { modelCallsSinceDecision } from "../db/approvals.repository.ts";
import { agentSpendToday } from "../db/metrics.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import type { RuntimeDeps } from "./deps.ts";
import { isNudge } from "./turn-actions.ts";
import type { RunLane } from "./turn-lane.ts";

// The agents file's limits, checked before each turn: past the hop or turn limit a task stops; over
// a spending cap it goes to a person instead of the model.

/**
 * Why the task must stop before the agent's next turn, and whether a person takes it; undefined
 * while it may go on.
 */
export async function limitReached(
  deps: RuntimeDeps,
  agent: Agent,
  loaded: { task: TaskRow; history: readonly ChatMessage[] },
  /** A person's words or decision came since the last turn. */
  freshStart: boolean,
  lane: RunLane,
): Promise<{ reason: string; toHuman?: boolean } | undefined> {
  const { task, history } = loaded;
  const { hop_limit: hopLimit, turn_limit: turnLimit } = deps.agents.file.defaults;
  // Up to the limit, the agent handed the work may still do it; one handoff more stops the task.
  if (task.hop_count > hopLimit)
    return {
      reason: `it was handed between agents ${task.hop_count} times without an answer (the limit is ${hopLimit})`,
    };
  // A model that calls tool after tool and never answers (a small local one, often): every reply
  // is usable, so no strike stops it, and each turn resends the whole stint.
  if (!freshStart && (await turnsWithout(deps, task, history, lane)) >= turnLimit)
    return {
      reason: `${agent.name} took ${turnLimit} turns in a row without an answer (the limit is ${turnLimit})`,
    };
  const capReason = overCap(agent, task) ?? (await overDailyCap(deps, agent, lane));
  return capReason ? { reason: capReason, toHuman: true } : undefined;
}

/**
 * The agent's turns since a person last spoke or decided. Their words are in the history; a
 * decision only answers a call there, so when the history says the limit is reached, the model
 * calls since the last decision are counted too (read only then: the turns behind written first).
 */
async function turnsWithout(
  deps: RuntimeDeps,
  task: TaskRow,
  history: readonly ChatMessage[],
  lane: RunLane,
): Promise<number> {
  const turns = turnsWithoutAnswer(history);
  if (turns < deps.agents.file.defaults.turn_limit) return turns;
  await lane.settled();
  return Math.min(turns, await modelCallsSinceDecision(deps.db, task.id));
}

/**
 * The agent's replies since the stint's last message from a person (or the note that opened it).
 * A nudge after an empty reply is Baton's, not a person's: a model looping with an empty reply
 * every few turns would otherwise never reach the limit, nor three unusable replies in a row.
 */
function turnsWithoutAnswer(history: readonly ChatMessage[]): number {
  let turns = 0;
  for (let i = history.length - 1; i >= 0; i--) {
    const message = history[i];
    if (message?.role === "user" && !isNudge(message)) break;
    if (message?.role === "assistant") turns++;
  }
  return turns;
}

/** Per-task caps from the agents file; a task over its cap goes to a human. */
function overCap(agent: Agent, task: TaskRow): string | undefined {
  const { tokens_per_task: maxTokens, usd_per_task: maxUsd } = agent.caps;
  if (maxTokens !== undefined && task.tokens >= maxTokens) {
    return `it used ${task.tokens} model tokens, over ${agent.name}'s cap of ${maxTokens} per task`;
  }
  const spent = Number(task.cost_usd);
  if (maxUsd !== undefined && spent >= maxUsd) {
    return `it cost ${spent.toFixed(4)} USD in model calls, over ${agent.name}'s cap of ${maxUsd} USD per task`;
  }
  return undefined;
}

/** The per-day cap: the agent's model spend since 00:00 UTC (the database's day), on every task. */
async function overDailyCap(
  deps: RuntimeDeps,
  agent: Agent,
  lane: RunLane,
): Promise<string | undefined> {
  const maxUsd = agent.caps.usd_per_day;
  if (maxUsd === undefined) return undefined;
  // The spend is read from the model calls written: this run's turns behind must be among them.
  await lane.settled();
  const spent = await agentSpendToday(deps.db, agent.id);
  if (spent < maxUsd) return undefined;
  return `${agent.name} spent ${spent.toFixed(4)} USD on model calls today (UTC), over its cap of ${maxUsd} USD per day`;
}
