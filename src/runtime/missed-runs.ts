import {
  type LeasedTask,
  lockTaskWithLease,
  releaseLease,
  taskWithLease,
} from "../db/lease.repository.ts";
import { audit } from "../db/ledger.repository.ts";
import { firstUnreadAuthor } from "../db/turn-reads.repository.ts";
import type { RuntimeDeps } from "./deps.ts";
import { agentTaskReopened, reopenForAgent } from "./reopen.ts";

// An accepted message whose run may never come: a reply kept while the run that would read it
// ended, or a start whose accept lost its answer. The accept checks after its commit, and gives up
// what a failed start may have committed, so the next delivery finds the task free to wake.

/**
 * A reply to an agent's task that waits on an approval queues no run: the run after the decision
 * reads it. Unless that run ended the task between the accept's read and its commit: it gave the
 * task up before the reply could be seen, so nothing would answer it. Checked once the reply is
 * committed, so a run that holds the task now reads it, and one that ended it is followed by another.
 * Checked too for Slack's retry of an event already stored: an active task no run holds may be one
 * whose accept lost its answer before its run began; its job, held back for that run, runs now.
 */
export async function wakeIfMissed(deps: RuntimeDeps, taskId: string): Promise<void> {
  // Whether a run holds the task is judged by the database's clock, which its lease was set by.
  const missed = (task: LeasedTask | undefined): task is LeasedTask =>
    task?.owner_kind === "agent" && task.status !== "waiting_human" && !task.leased;
  // Read first, without a lock: most often a run holds the task, or it waits on a person.
  if (!missed(await taskWithLease(deps.db, taskId))) return;
  await deps.db.transaction().execute(async (tx) => {
    const task = await lockTaskWithLease(tx, taskId);
    if (!missed(task)) return;
    const author = await firstUnreadAuthor(tx, taskId);
    if (!author) {
      // A job that runs now finds the lease free to claim, or, should a run claim it first, held.
      if (task.status === "active") await deps.queue.enqueueUnlessWaiting(tx, taskId);
      return;
    }
    if (task.status !== "active") {
      // Reopened by a person's reply, as the accept reopens.
      await reopenForAgent(tx, taskId);
      await audit(tx, agentTaskReopened(task, author));
    }
    await deps.queue.enqueue(tx, taskId);
  });
}

/** Gives up the lease a start that failed may have committed, if its run's it still is. */
export async function giveUpStart(
  deps: RuntimeDeps,
  taskId: string,
  worker: string,
): Promise<void> {
  await releaseLease(deps.db, taskId, worker).catch((error: unknown) => {
    // Still away: the lease runs out, and the task's job comes due with it.
    deps.log.warn({ err: error, taskId }, "could not give up the lease of a failed start");
  });
}
