import type { ChatIntent } from "../core/ports.ts";
import { shorten } from "../core/text.ts";
import * as approvalsDb from "../db/approvals.repository.ts";
import type { Tx } from "../db/database.ts";
import { leaseHeld } from "../db/lease.repository.ts";
import { audit } from "../db/ledger.repository.ts";
import { enqueueOutbox } from "../db/outbox.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import { lockTask, type TaskChanges, updateTask } from "../db/tasks.repository.ts";
import { consumeUnreadInputs } from "../db/turn-reads.repository.ts";
import { maskSecrets } from "../log.ts";
import { approvalCardUpdate } from "./approval-deadline.ts";
import type { RuntimeDeps } from "./deps.ts";
import type { AgentEffects } from "./effects.ts";
import { doneItems, startEscalation } from "./escalations.ts";
import { failureNotice, post } from "./messages.ts";
import { deliverOutbox } from "./outbox.ts";
import { answerParkedCall, WITHDRAWN_RESULT } from "./settle-approvals.ts";

/** A reason is read by people (the thread, `/baton status`, the digest): kept to this many characters. */
const MAX_REASON = 2_000;

export interface HaltInput {
  reason: string;
  toHuman?: boolean;
  holdsLease?: boolean;
  /** Not while a run holds the task (a dead letter: another job took the task on since). */
  unlessDriven?: boolean;
  /** Not if the task changed at or after this time (a dead letter: another job moved it on). */
  unlessMovedSince?: Date;
  /** Said instead of the thread's failure notice: Slack refuses the thread (see lost-threads.ts). */
  notice?: ChatIntent;
}

/**
 * Stops a task that must not go on (hop limit, cost cap, a model that cannot be used), and says so
 * in its thread (or, with `notice`, where that says). With `toHuman`, the task goes to the owner-escalation lane with a note saying why.
 * `holdsLease`: the caller is the run driving the task (`deps.workerId`), whose rows it may deliver.
 * The reason is often an error's message, which may repeat a key or a whole request: it is masked
 * and shortened before it is stored, posted or audited. True when it stopped the task.
 */
export async function haltTask(
  deps: RuntimeDeps,
  task: TaskRow,
  input: HaltInput,
): Promise<boolean> {
  const reason = shorten(maskSecrets(input.reason), MAX_REASON);
  const afterCommit = await deps.db
    .transaction()
    .execute((tx) => haltLocked(deps, tx, task.id, input, reason));
  // The thread is told; so is the operator, whose setup (a model name, a key) is often the cause.
  if (afterCommit)
    deps.log.warn(
      { taskId: task.id, reason },
      input.toHuman ? "task stopped and sent to a person" : "task failed",
    );
  for (const effect of afterCommit ?? []) effect();
  await deliverOutbox(deps, { taskId: task.id, holdsLease: input.holdsLease ?? false });
  return afterCommit !== undefined;
}

/** In the halt's transaction: what to do once it commits, or nothing when nothing was stopped. */
async function haltLocked(
  deps: RuntimeDeps,
  tx: Tx,
  taskId: string,
  input: HaltInput,
  reason: string,
): Promise<(() => void)[] | undefined> {
  await approvalsDb.lockPendingApprovals(tx, taskId);
  const locked = await lockTask(tx, taskId);
  if (!locked || !(await mayHalt(tx, locked, input))) return undefined;
  const fx = haltEffects(deps, tx, locked);
  if (input.toHuman) await escalateHalted(fx, reason);
  else await failHalted(tx, fx, reason, input.notice);
  fx.audits.push({
    taskId: locked.id,
    actor: { kind: "system", id: "baton" },
    kind: input.toHuman ? "task_stopped" : "task_failed",
    data: { reason },
  });
  await withdrawApprovals(deps, tx, fx);
  // The halting run's work ends here: a worker that dies before letting go lost no try.
  await updateTask(tx, locked.id, fx.changes, {
    finishedRun: input.holdsLease ? deps.workerId : undefined,
  });
  await audit(tx, fx.audits);
  await enqueueOutbox(tx, fx.outbox);
  return fx.afterCommit;
}

async function mayHalt(tx: Tx, locked: TaskRow, input: HaltInput): Promise<boolean> {
  if (locked.status === "done" || locked.status === "failed") return false;
  // Under the task's lock, so no run claims it between this look and the halt.
  if (input.unlessDriven && (await leaseHeld(tx, locked.id))) return false;
  // Both times are the database's, read to the millisecond: a tie counts as a move, and leaves
  // the task to be queued again rather than stopped.
  if (input.unlessMovedSince && locked.last_activity_at >= input.unlessMovedSince) return false;
  // A cap is checked on the run's copy of the task; a person may hold it by now (a run whose
  // lease lapsed, a second run). It is theirs, not an agent's turn to stop: no second escalation.
  if (input.toHuman && locked.owner_kind !== "agent") return false;
  return true;
}

function haltEffects(deps: RuntimeDeps, tx: Tx, locked: TaskRow): AgentEffects {
  const agent = locked.owner_kind === "agent" ? deps.agents.get(locked.owner_id) : undefined;
  return {
    tx,
    deps,
    task: locked,
    agent: agent ?? deps.agents.entryFor(locked.channel_id),
    stepNo: locked.step_no + 1,
    changes: { stepNo: locked.step_no + 1 } as TaskChanges,
    audits: [],
    outbox: [],
    afterCommit: [],
  };
}

async function escalateHalted(fx: AgentEffects, reason: string): Promise<void> {
  const { task } = fx;
  await startEscalation(fx, {
    reason: "cap",
    note: {
      requester: `<@${task.requester_id}>`,
      summary: task.title,
      done: await doneItems(fx.tx, task.id),
      reason: `Stopped automatically: ${reason}.`,
      urgency: "high",
      lane: "owner_escalation",
      recommended_action:
        "Decide whether to raise the cap and send it back to an agent, or take it over.",
      facts: task.facts as Record<string, string>,
    },
  });
}

async function failHalted(
  tx: Tx,
  fx: AgentEffects,
  reason: string,
  notice: ChatIntent | undefined,
): Promise<void> {
  const { task } = fx;
  Object.assign(fx.changes, { status: "failed", failureReason: reason });
  await consumeUnreadInputs(tx, task.id, fx.stepNo);
  fx.outbox.push(notice ? post(task, notice) : failureNotice(task, reason));
  fx.afterCommit.push(() => fx.deps.metrics.tasksFinished.inc({ outcome: "failed" }));
}

/**
 * What the task asked people to decide and nobody has: its cards say so and lose their buttons, so
 * a late Approve cannot look like it did something the stopped task will never do. The parked call
 * ends now as not run, so no report shows the task waiting on it, and the agent of a task opened
 * again reads why it did not run.
 */
async function withdrawApprovals(deps: RuntimeDeps, tx: Tx, fx: AgentEffects): Promise<void> {
  for (const row of await approvalsDb.withdrawPendingApprovals(tx, fx.task.id)) {
    await answerParkedCall(tx, fx.task, row, {
      status: "withdrawn",
      result: WITHDRAWN_RESULT,
      allowedBy: null,
    });
    fx.afterCommit.push(() => deps.metrics.toolCalls.inc({ tool: row.tool, outcome: "withdrawn" }));
    fx.outbox.push(
      await approvalCardUpdate(deps, tx, fx.task, row, {
        status: "withdrawn",
        at: row.decided_at.toISOString(),
      }),
    );
    fx.audits.push({
      taskId: fx.task.id,
      actor: { kind: "system", id: "baton" },
      kind: "approval_withdrawn",
      data: { approval_id: row.id, tool: row.tool },
    });
  }
}
