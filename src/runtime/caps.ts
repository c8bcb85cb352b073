import type { Agent } from "../core/agents/directory.ts";
import { agentSpendSince } from "../db/metrics.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import type { RuntimeDeps } from "./deps.ts";
import type { RunLane } from "./turn-lane.ts";

// The agents file's spending caps: a task over one goes to a person instead of the model.

/** Per-task caps from the agents file; a task over its cap goes to a human. */
export function overCap(agent: Agent, task: TaskRow): string | undefined {
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

/** The per-day cap: the agent's model spend since 00:00 UTC, on every task. */
export async function overDailyCap(
  deps: RuntimeDeps,
  agent: Agent,
  lane: RunLane,
): Promise<string | undefined> {
  const maxUsd = agent.caps.usd_per_day;
  if (maxUsd === undefined) return undefined;
  // The spend is read from the model calls written: this run's turns behind must be among them.
  await lane.settled();
  const dayStart = new Date(deps.clock.now());
  dayStart.setUTCHours(0, 0, 0, 0);
  const spent = await agentSpendSince(deps.db, agent.id, dayStart);
  if (spent < maxUsd) return undefined;
  return `${agent.name} spent ${spent.toFixed(4)} USD on model calls today (UTC), over its cap of ${maxUsd} USD per day`;
}
