import { systemMessage } from "../core/context.ts";
import { interpretReply } from "../core/dispatch.ts";
import { type ChatMessage, type ModelReply, messageChars } from "../core/model.ts";
import { toolSpecsFor } from "../core/tools/builtin.ts";
import { type Claim, claimLease, resumeWork } from "../db/lease.repository.ts";
import type { Delivered } from "../db/outbox-marks.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import { loadTurn } from "../db/turn-reads.repository.ts";
import { isBatonError } from "../errors.ts";
import { limitReached } from "./caps.ts";
import type { RuntimeDeps } from "./deps.ts";
import { haltTask } from "./halt.ts";
import { replyMessage } from "./messages.ts";
import { deliverOutbox } from "./outbox.ts";
import { type RunDeliveries, runDeliveries } from "./run-deliveries.ts";
import { giveUp, holdingLease, runWorker } from "./run-lease.ts";
import { settleDecidedApprovals } from "./settle-approvals.ts";
import { type CommittedTurn, commitTurn, DROPPED, type TurnState } from "./turn.ts";
import { type RunLane, runLane } from "./turn-lane.ts";

// One job drives a task through many turns; past this it yields the worker and re-queues itself.
const MAX_TURNS_PER_RUN = 40;
/**
 * Drives one task until it waits for a human, ends, or fails. Every turn commits on its own,
 * so a process killed anywhere resumes from the last commit and repeats no side effect.
 */
export async function runTask(
  processDeps: RuntimeDeps,
  taskId: string,
  /** The lease, already taken by the task's start for this run (a task run where it was accepted). */
  started?: { claim: Claim; worker: string },
): Promise<void> {
  // The lease is this run's, not the process's: a job queued for the task while a run of this
  // process holds it (a decision on the card the run just posted) must not drive it alongside.
  const deps: RuntimeDeps = {
    ...processDeps,
    workerId: started?.worker ?? runWorker(processDeps),
    // A reload of the agents file (SIGHUP) replaces these on the process's deps: read there, it
    // reaches a run under way from its next turn.
    get agents() {
      return processDeps.agents;
    },
    get tools() {
      return processDeps.tools;
    },
  };
  const claim = started?.claim ?? (await claimLease(deps.db, taskId, deps.workerId, deps.leaseMs));
  if (!claim) {
    deps.log.debug({ taskId }, "task is driven by another worker");
    return;
  }
  // What turns say is posted behind them, in order; a posted row is marked sent by the next turn's
  // statement. Anything that delivers through deliverOutbox (a halt, a backlog) flushes first, or
  // would send those rows again.
  const deliveries = runDeliveries(deps);
  const lane = runLane(deps.db, deliveries);
  // Messages an earlier run left undelivered, or a failed post: from then on this run delivers
  // through the locked, in-order path that looks in Slack before sending a row again.
  let backlog = claim.undelivered;
  let released: Awaited<ReturnType<typeof giveUp>>;
  // An approved call the operator's setup refuses (an HTTP tool's credentials): no retry mends it.
  const haltOnSetup = async (error: unknown): Promise<boolean> => {
    if (!isBatonError(error) || error.fault !== "operator") throw error;
    await haltTask(deps, claim.turn.task, { reason: error.message, holdsLease: true });
    return true;
  };
  try {
    // Decisions arrive while the task waits, so they are settled once, as the run starts; a long
    // backlog of posts, or a slow approved tool, keeps the lease as a turn does.
    let afterDecision = await holdingLease(deps, taskId, async () => {
      if (backlog) await deliverOutbox(deps, { taskId, olderThanMs: 0, holdsLease: true });
      const settle = () => settleDecidedApprovals(deps, taskId, () => deliveries.flush());
      return claim.decided && (await settle().catch(haltOnSetup));
    });
    // The first turn starts from what the claim read, unless something since changed it (a halt).
    const { task, history, inputs, replay } = claim.turn;
    let state: TurnState | undefined =
      backlog || claim.decided || inputs.length > 0
        ? undefined
        : { task, history, ...(replay && { replay }) };
    for (let turn = 0; turn < MAX_TURNS_PER_RUN && !lane.dropped; turn++) {
      // A person replied: read the task once the turns behind have landed.
      if (lane.takeReadAgain()) state = undefined;
      if (!state && !(await lane.settled())) break;
      const marks = deliveries.take();
      const result = await runTurn(deps, taskId, {
        afterDecision,
        state,
        deliveries,
        marks,
        lane,
        // Posted rows not yet marked are marked before the settle delivers a card (as a halt does).
        settle: () =>
          holdingLease(deps, taskId, () =>
            settleDecidedApprovals(deps, taskId, async () => {
              deliveries.giveBack(marks.splice(0));
              await deliveries.flush();
            }).catch(haltOnSetup),
          ),
      }).catch((error: unknown) => {
        deliveries.giveBack(marks);
        throw error;
      });
      lane.track(result.written, marks);
      afterDecision = false;
      state = result.next;
      if (result.outcome === "said") {
        if (backlog || deliveries.failed) {
          backlog = true;
          if (!(await lane.settled())) break;
          // Slack may be slow to take them: the lease is kept meanwhile, as for a turn.
          // After a failed post, a row may be in Slack unmarked (its mark failed too): look first.
          await holdingLease(deps, taskId, async () => {
            await deliveries.flush();
            await deliverOutbox(deps, { taskId, olderThanMs: 0, holdsLease: true });
          });
        } else deliveries.send(result.written.then((w) => w.outbox));
      }
      if (result.outcome === "idle") break;
    }
    // The last turn's statement and posts finish with the lease kept: Slack may be slow to take the
    // last answer. A statement behind that failed fails the run, as a turn that failed in place would.
    await holdingLease(deps, taskId, async () => {
      await lane.settled();
      await deliveries.settled();
      // A post failed after the last turn that spoke: send what it held back, in order.
      if (deliveries.failed && !backlog) {
        await deliveries.flush();
        await deliverOutbox(deps, { taskId, olderThanMs: 0, holdsLease: true });
      }
    });
  } finally {
    released = await giveUp(deps, taskId, lane, deliveries);
  }
  // A reply that arrived while this worker held the lease found the task busy; pick it up now.
  if (released?.status === "active" && released.owner_kind === "agent")
    await deps.queue.enqueue(deps.db, taskId);
  // A person who decided on a card while this worker held the lease left the card's update to it
  // (a decision that does not queue the task, such as taking it over, has no next run to send it).
  else if (released?.status === "waiting_human") await deliverOutbox(deps, { taskId });
}

const IDLE: CommittedTurn = {
  outcome: "idle",
  next: undefined,
  written: Promise.resolve(DROPPED),
};

async function runTurn(
  deps: RuntimeDeps,
  taskId: string,
  run: {
    afterDecision: boolean;
    state: TurnState | undefined;
    deliveries: RunDeliveries;
    /** Rows posted since the last turn: this turn's statement marks them sent. */
    marks: Delivered[];
    lane: RunLane;
    /** Settles decided approvals (the turns behind have landed); true when it settled any. */
    settle: () => Promise<boolean>;
  },
): Promise<CommittedTurn> {
  const halt = async (task: TaskRow, input: Parameters<typeof haltTask>[2]) => {
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
  };
  // The turn before left the task's state behind it; read it only when there is none.
  let loaded = run.state
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
  if (!loaded) return IDLE;
  const { task, history, replay } = loaded;
  // A replayed reply read only the replies that had come then; later ones wait for the next turn.
  const inputs = replay
    ? loaded.inputs.filter((i) => replay.inputIds.includes(i.id))
    : loaded.inputs;
  if (task.status !== "active" || task.owner_kind !== "agent") return IDLE;
  const agent = deps.agents.get(task.owner_id);
  if (!agent) {
    return halt(task, { reason: `the agent "${task.owner_id}" is no longer in the agents file` });
  }
  // A reply, or a person's decision just settled, is a person in between: the turns count afresh.
  const stop = await limitReached(
    deps,
    agent,
    loaded,
    inputs.length > 0 || afterDecision,
    run.lane,
  );
  if (stop) return halt(task, stop);
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
  return holdingLease(deps, task.id, async () => {
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
      return halt(task, { reason: `the model could not be used: ${error.message}` });
    }
    const latencyMs = replay?.latencyMs ?? performance.now() - started;
    // The agents file may have been reloaded while the model answered: the reply acts under the file
    // in use now, all of it under one (the spread reads deps' getters once; a reload swaps them).
    const now: RuntimeDeps = { ...deps };
    const acting = now.agents.get(task.owner_id);
    if (!acting)
      return halt(task, { reason: `the agent "${task.owner_id}" is no longer in the agents file` });
    const backTo = task.handback_stack.findLast((id) => now.agents.get(id) !== undefined);
    const actions = interpretReply(reply, {
      agent: acting,
      registry: now.tools,
      handBackTo: backTo,
    });
    // The reply's calls that write outside the database (HTTP tools): a rollback does not undo them.
    const outside = actions.flatMap((a) =>
      a.kind === "tool" && a.tool.external && a.tool.toolClass !== "read" ? [a.tool.name] : [],
    );
    return commitTurn(
      now,
      {
        task,
        agent: acting,
        reply,
        actions,
        inputIds: inputs.map((i) => i.id),
        newMessages,
        latencyMs,
        requestChars: messageChars(messages),
        firstOfStint: history.length <= 1 || afterDecision,
        history,
        delivered: run.marks,
        keepsReply: outside.length > 0 && !replay,
      },
      run.lane,
    ).catch((error: unknown) => {
      // The operator's setup refused the turn (an HTTP tool's credentials): no retry can pass,
      // so the task stops now and its thread says why, rather than after every retry. The turn
      // rolled back, but a call of it that acts outside the database may have acted: say which.
      if (!isBatonError(error) || error.fault !== "operator") throw error;
      const acted = outside.length
        ? `; check whether ${[...new Set(outside)].join(", ")} acted before it stopped`
        : "";
      return halt(task, { reason: `${error.message}${acted}` });
    });
  });
}
