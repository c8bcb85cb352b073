import { type Claim, claimLease } from "../db/lease.repository.ts";
import type { Delivered } from "../db/outbox-marks.repository.ts";
import { isBatonError } from "../errors.ts";
import type { RuntimeDeps } from "./deps.ts";
import { haltTask } from "./halt.ts";
import { deliverOutbox } from "./outbox.ts";
import { type RunDeliveries, runDeliveries } from "./run-deliveries.ts";
import { giveUp, holdingLease, runWorker } from "./run-lease.ts";
import { runTurn, type TurnRun } from "./run-turn.ts";
import { settleDecidedApprovals } from "./settle-approvals.ts";
import type { CommittedTurn, TurnState } from "./turn.ts";
import { type RunLane, runLane } from "./turn-lane.ts";

// One job drives a task through many turns; past this it yields the worker and re-queues itself.
const MAX_TURNS_PER_RUN = 40;

/** A run under way: its lease's holder, and its turns' statements and posts behind them. */
interface Run {
  deps: RuntimeDeps;
  taskId: string;
  claim: Claim;
  deliveries: RunDeliveries;
  lane: RunLane;
  /**
   * Messages an earlier run left undelivered, or a failed post: from then on this run delivers
   * through the locked, in-order path that looks in Slack before sending a row again.
   */
  backlog: boolean;
}

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
  const deps = runDeps(processDeps, started?.worker);
  const claim = started?.claim ?? (await claimLease(deps.db, taskId, deps.workerId, deps.leaseMs));
  if (!claim) {
    deps.log.debug({ taskId }, "task is driven by another worker");
    return;
  }
  const run = openRun(deps, taskId, claim);
  let released: Awaited<ReturnType<typeof giveUp>>;
  try {
    await driveTurns(run);
    await finishTurns(run);
  } finally {
    released = await giveUp(deps, taskId, run.lane, run.deliveries);
  }
  await afterRelease(deps, taskId, released);
}

/**
 * The lease is this run's, not the process's: a job queued for the task while a run of this
 * process holds it (a decision on the card the run just posted) must not drive it alongside.
 */
function runDeps(processDeps: RuntimeDeps, worker: string | undefined): RuntimeDeps {
  return {
    ...processDeps,
    workerId: worker ?? runWorker(processDeps),
    // A reload of the agents file (SIGHUP) replaces these on the process's deps: read there, it
    // reaches a run under way from its next turn.
    get agents() {
      return processDeps.agents;
    },
    get tools() {
      return processDeps.tools;
    },
  };
}

function openRun(deps: RuntimeDeps, taskId: string, claim: Claim): Run {
  // What turns say is posted behind them, in order; a posted row is marked sent by the next turn's
  // statement. Anything that delivers through deliverOutbox (a halt, a backlog) flushes first, or
  // would send those rows again.
  const deliveries = runDeliveries(deps);
  const lane = runLane(deps.db, deliveries);
  return { deps, taskId, claim, deliveries, lane, backlog: claim.undelivered };
}

/** Turns until the task waits or ends, a turn behind is dropped, or the run has had its share. */
async function driveTurns(run: Run): Promise<void> {
  let afterDecision = await settleAtStart(run);
  let state = firstState(run);
  for (let turn = 0; turn < MAX_TURNS_PER_RUN && !run.lane.dropped; turn++) {
    // A person replied: read the task once the turns behind have landed.
    if (run.lane.takeReadAgain()) state = undefined;
    if (!state && !(await run.lane.settled())) break;
    const marks = run.deliveries.take();
    const result = await runTurn(run.deps, run.taskId, forTurn(run, afterDecision, state, marks))
      // A turn that failed marked none of them: given back, for the release to mark.
      .catch((error: unknown) => {
        run.deliveries.giveBack(marks);
        throw error;
      });
    run.lane.track(result.written, marks);
    afterDecision = false;
    state = result.next;
    if (result.outcome === "said" && !(await postSaid(run, result))) break;
    if (result.outcome === "idle") break;
  }
}

/**
 * Decisions arrive while the task waits, so they are settled once, as the run starts; a long
 * backlog of posts, or a slow approved tool, keeps the lease as a turn does.
 */
function settleAtStart(run: Run): Promise<boolean> {
  const { deps, taskId, claim, deliveries } = run;
  return holdingLease(deps, taskId, async () => {
    if (run.backlog) await deliverOutbox(deps, { taskId, olderThanMs: 0, holdsLease: true });
    const settle = () => settleDecidedApprovals(deps, taskId, () => deliveries.flush());
    return claim.decided && (await settle().catch((error: unknown) => haltOnSetup(run, error)));
  });
}

/** The first turn starts from what the claim read, unless something since changed it (a halt). */
function firstState({ claim, backlog }: Run): TurnState | undefined {
  const { task, history, inputs, replay } = claim.turn;
  if (backlog || claim.decided || inputs.length > 0) return undefined;
  return { task, history, ...(replay && { replay }) };
}

function forTurn(
  run: Run,
  afterDecision: boolean,
  state: TurnState | undefined,
  marks: Delivered[],
): TurnRun {
  const { deps, taskId, deliveries, lane } = run;
  return {
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
        }).catch((error: unknown) => haltOnSetup(run, error)),
      ),
  };
}

// An approved call the operator's setup refuses (an HTTP tool's credentials): no retry mends it.
async function haltOnSetup(run: Run, error: unknown): Promise<boolean> {
  if (!isBatonError(error) || error.fault !== "operator") throw error;
  await haltTask(run.deps, run.claim.turn.task, { reason: error.message, holdsLease: true });
  return true;
}

/** Posts what a turn said; false when a turn behind was dropped, and the run stops. */
async function postSaid(run: Run, result: CommittedTurn): Promise<boolean> {
  const { deps, taskId, deliveries, lane } = run;
  if (!run.backlog && !deliveries.failed) {
    deliveries.send(result.written.then((w) => w.outbox));
    return true;
  }
  run.backlog = true;
  if (!(await lane.settled())) return false;
  // Slack may be slow to take them: the lease is kept meanwhile, as for a turn.
  // After a failed post, a row may be in Slack unmarked (its mark failed too): look first.
  await holdingLease(deps, taskId, async () => {
    await deliveries.flush();
    await deliverOutbox(deps, { taskId, olderThanMs: 0, holdsLease: true });
  });
  return true;
}

/**
 * The last turn's statement and posts finish with the lease kept: Slack may be slow to take the
 * last answer. A statement behind that failed fails the run, as a turn that failed in place would.
 */
function finishTurns(run: Run): Promise<void> {
  const { deps, taskId, deliveries, lane } = run;
  return holdingLease(deps, taskId, async () => {
    await lane.settled();
    await deliveries.settled();
    // A post failed after the last turn that spoke: send what it held back, in order.
    if (deliveries.failed && !run.backlog) {
      await deliveries.flush();
      await deliverOutbox(deps, { taskId, olderThanMs: 0, holdsLease: true });
    }
  });
}

async function afterRelease(
  deps: RuntimeDeps,
  taskId: string,
  released: Awaited<ReturnType<typeof giveUp>>,
): Promise<void> {
  // A reply that arrived while this worker held the lease found the task busy; pick it up now.
  if (released?.status === "active" && released.owner_kind === "agent")
    await deps.queue.enqueue(deps.db, taskId);
  // Whoever wrote rows for the task while this worker held the lease left them to it: a person who
  // decided on a card (taking it over queues no next run), or closed the task with `/baton done`.
  else if (released) await deliverOutbox(deps, { taskId });
}
