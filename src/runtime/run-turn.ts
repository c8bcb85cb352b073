import type { Agent } from "../core/agents/directory.ts";
import { systemMessage } from "../core/context.ts";
import { interpretReply } from "../core/dispatch.ts";
import { type ChatMessage, type ModelReply, messageChars } from "../core/model.ts";
import { toolSpecsFor } from "../core/tools/builtin.ts";
import { resumeWork } from "../db/lease.repository.ts";
import type { Delivered } from "../db/outbox-marks.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import { type LoadedTurn, loadTurn, type ReplayedReply } from "../db/turn-reads.repository.ts";
import { isBatonError } from "../errors.ts";
import { limitReached } from "./caps.ts";
import type { RuntimeDeps } from "./deps.ts";
import { type HaltInput, haltTask } from "./halt.ts";
import { replyMessage } from "./messages.ts";
import type { RunDeliveries } from "./run-deliveries.ts";
import { holdingLease } from "./run-lease.ts";
import { type CommittedTurn, commitTurn, DROPPED, type Turn, type TurnState } from "./turn.ts";
import type { RunLane } from "./turn-lane.ts";

/** What a run hands each of its turns. */
export interface TurnRun {
  afterDecision: boolean;
  state: TurnState | undefined;
  deliveries: RunDeliveries;
  /** Rows posted since the last turn: this turn's statement marks them sent. */
  marks: Delivered[];
  lane: RunLane;
  /** Settles decided approvals (the turns behind have landed); true when it settled any. */
  settle: () => Promise<boolean>;
}

/** What a turn works from, once read. */
interface TurnReads {
  task: TaskRow;
  history: ChatMessage[];
  inputs: LoadedTurn["inputs"];
  replay: ReplayedReply | undefined;
  afterDecision: boolean;
}

const IDLE: CommittedTurn = {
  outcome: "idle",
  next: undefined,
  written: Promise.resolve(DROPPED),
};

/** One turn of a run: the task read, its limits checked, the model asked, the reply committed. */
export async function runTurn(
  deps: RuntimeDeps,
  taskId: string,
  run: TurnRun,
): Promise<CommittedTurn> {
  const read = await readTurn(deps, taskId, run);
  if (!read) return IDLE;
  const { task, inputs, afterDecision } = read;
  if (task.status !== "active" || task.owner_kind !== "agent") return IDLE;
  const agent = deps.agents.get(task.owner_id);
  if (!agent) return haltTurn(deps, run, task, { reason: agentGone(task) });
  // A reply, or a person's decision just settled, is a person in between: the turns count afresh.
  const stop = await limitReached(deps, agent, read, inputs.length > 0 || afterDecision, run.lane);
  if (stop) return haltTurn(deps, run, task, stop);
  const request = modelRequest(deps, agent, read);
  // The lease is kept while the model answers: a local one may take minutes.
  return holdingLease(deps, task.id, async () => {
    const answer = await askModel(deps, request, read.replay);
    if ("reason" in answer) return haltTurn(deps, run, task, answer);
    return commitReply(deps, run, read, request, answer);
  });
}

async function readTurn(
  deps: RuntimeDeps,
  taskId: string,
  run: TurnRun,
): Promise<TurnReads | undefined> {
  // The turn before left the task's state behind it; read it only when there is none.
  let loaded: LoadedTurn | undefined = run.state
    ? { ...run.state, inputs: [], decided: false }
    : await loadTurn(deps.db, taskId);
  let afterDecision = run.afterDecision;
  // The run's last turn finished its work, and a reply or a decision has since given the task back
  // to the agent: this run works on (its turns behind have all landed), and may die doing so.
  const resumed = loaded?.task;
  if (resumed?.lease_finished && resumed.status === "active" && resumed.owner_kind === "agent")
    await resumeWork(deps.db, taskId, deps.workerId);
  // A decision that committed after the run's claim read none (a reply or a backlog made it read
  // again): its approved call runs, and its parked call is answered, before the agent's next turn.
  // Not on a task that stopped: a call whose settling halted it stays as it was.
  if (loaded?.decided && loaded.task.status === "active" && (await run.settle())) {
    loaded = await loadTurn(deps.db, taskId);
    afterDecision = true;
  }
  if (!loaded) return undefined;
  const { task, history, replay } = loaded;
  // A replayed reply read only the replies that had come then; later ones wait for the next turn.
  const inputs = replay
    ? loaded.inputs.filter((i) => replay.inputIds.includes(i.id))
    : loaded.inputs;
  return { task, history, inputs, replay, afterDecision };
}

function modelRequest(deps: RuntimeDeps, agent: Agent, read: TurnReads) {
  const { task, history, inputs } = read;
  const newMessages: ChatMessage[] = inputs.map((input) => replyMessage(input, task.requester_id));
  // An agent removed from the agents file since it handed the work over is passed by: the chain
  // unwinds to the one before it, or, with none left, the agent answers the requester itself.
  const handBackTo = task.handback_stack.findLast((id) => deps.agents.get(id) !== undefined);
  const messages: ChatMessage[] = [systemMessage(agent, task.facts), ...history, ...newMessages];
  const tools = toolSpecsFor(
    agent,
    deps.tools,
    (id) => deps.agents.get(id),
    handBackTo !== undefined,
  );
  return { agent, newMessages, messages, tools };
}

type ModelRequest = ReturnType<typeof modelRequest>;

async function askModel(
  deps: RuntimeDeps,
  { agent, messages, tools }: ModelRequest,
  replay: ReplayedReply | undefined,
): Promise<{ reply: ModelReply; latencyMs: number } | { reason: string }> {
  const started = performance.now();
  let reply: ModelReply;
  try {
    // A try of this step that failed after a tool acted outside the database kept its reply:
    // the model is not asked again, so the same calls go out again under the same keys.
    reply =
      replay?.reply ??
      (await deps.model.complete({ model: agent.model, agentId: agent.id, messages, tools }));
  } catch (error) {
    // Rate limits and outages: the job retries with backoff, then dead-letters.
    if (!isBatonError(error) || error.retriable) throw error;
    return { reason: `the model could not be used: ${error.message}` };
  }
  return { reply, latencyMs: replay?.latencyMs ?? performance.now() - started };
}

/** The reply acted on under the agents file in use now, and committed. */
async function commitReply(
  deps: RuntimeDeps,
  run: TurnRun,
  read: TurnReads,
  request: ModelRequest,
  answer: { reply: ModelReply; latencyMs: number },
): Promise<CommittedTurn> {
  const { task, history, replay } = read;
  // The agents file may have been reloaded while the model answered: the reply acts under the file
  // in use now, all of it under one (the spread reads deps' getters once; a reload swaps them).
  const now: RuntimeDeps = { ...deps };
  const acting = now.agents.get(task.owner_id);
  if (!acting) return haltTurn(deps, run, task, { reason: agentGone(task) });
  const backTo = task.handback_stack.findLast((id) => now.agents.get(id) !== undefined);
  const actions = interpretReply(answer.reply, {
    agent: acting,
    registry: now.tools,
    handBackTo: backTo,
  });
  // The reply's calls that write outside the database (HTTP tools): a rollback does not undo them.
  const outside = actions.flatMap((a) =>
    a.kind === "tool" && a.tool.external && a.tool.toolClass !== "read" ? [a.tool.name] : [],
  );
  const turn: Turn = {
    task,
    agent: acting,
    reply: answer.reply,
    actions,
    inputIds: read.inputs.map((i) => i.id),
    newMessages: request.newMessages,
    latencyMs: answer.latencyMs,
    requestChars: messageChars(request.messages),
    firstOfStint: history.length <= 1 || read.afterDecision,
    history,
    delivered: run.marks,
    keepsReply: outside.length > 0 && !replay,
  };
  return commitTurn(now, turn, run.lane).catch((error: unknown) =>
    haltOnRefusedSetup(deps, run, task, error, outside),
  );
}

/**
 * The operator's setup refused the turn (an HTTP tool's credentials): no retry can pass, so the
 * task stops now and its thread says why, rather than after every retry. The turn rolled back, but
 * a call of it that acts outside the database may have acted: say which.
 */
function haltOnRefusedSetup(
  deps: RuntimeDeps,
  run: TurnRun,
  task: TaskRow,
  error: unknown,
  outside: readonly string[],
): Promise<CommittedTurn> {
  if (!isBatonError(error) || error.fault !== "operator") throw error;
  const acted = outside.length
    ? `; check whether ${[...new Set(outside)].join(", ")} acted before it stopped`
    : "";
  return haltTurn(deps, run, task, { reason: `${error.message}${acted}` });
}

async function haltTurn(
  deps: RuntimeDeps,
  run: TurnRun,
  task: TaskRow,
  input: HaltInput,
): Promise<CommittedTurn> {
  // The halt writes on the task as the turns behind left it, if they all landed.
  if (!(await run.lane.settled())) return IDLE;
  // The halt delivers through deliverOutbox: every posted row is marked sent first. A post slowed
  // by Slack (Retry-After) can outlast the lease: renewed, no other run takes the task over and
  // posts the same row again.
  run.deliveries.giveBack(run.marks.splice(0));
  await holdingLease(deps, task.id, async () => {
    await run.deliveries.flush();
    await haltTask(deps, task, { ...input, holdsLease: true });
  });
  return IDLE;
}

function agentGone(task: TaskRow): string {
  return `the agent "${task.owner_id}" is no longer in the agents file`;
}
