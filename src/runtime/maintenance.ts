import { within } from "../core/duration.ts";
import { findOrphanedTasks, lockOrphanedTask } from "../db/lease.repository.ts";
import { enforceDeadlines } from "./deadlines.ts";
import type { RuntimeDeps } from "./deps.ts";
import { sendLostAnswers } from "./lost-answers.ts";
import { stopTasksWithLostThread } from "./lost-threads.ts";
import { deliverOutbox } from "./outbox.ts";

const EVERY_MS = 15_000;
/** An outbox row this old was not delivered by its writer: a process died, or Slack failed. */
const STRANDED_OUTBOX_MS = 30_000;

/**
 * Background work that makes crashes harmless: tasks whose worker died are queued again,
 * stranded Slack messages are delivered (once), approvals past their deadline expire, and tasks
 * whose thread Slack refuses for good (an archived channel) stop, or, answered, send it by DM.
 * Every step is idempotent, so several replicas may run it at once.
 */
export function startMaintenance(deps: RuntimeDeps): (waitMs: number) => Promise<void> {
  let running: Promise<void> | undefined;
  const tick = () => {
    running ??= runMaintenance(deps)
      .catch((error) => deps.log.warn({ err: error }, "maintenance failed"))
      .finally(() => {
        running = undefined;
      });
  };
  const timer = setInterval(tick, EVERY_MS);
  timer.unref();
  tick();
  // A sweep under way finishes within the stop's deadline, or is left: a row it sent and had not
  // marked is looked for in Slack before anyone sends it again.
  return async (waitMs) => {
    clearInterval(timer);
    if (running) await within(running, waitMs);
  };
}

/**
 * Each step, and each orphan, on its own: one that fails (the job queue away for a moment) is
 * logged and tried again at the next sweep, and holds up neither the Slack messages nor the
 * deadlines behind it.
 */
export async function runMaintenance(deps: RuntimeDeps): Promise<void> {
  const step = (what: string, work: () => Promise<unknown>) =>
    work().catch((error: unknown) => deps.log.warn({ err: error }, `maintenance: ${what} failed`));
  await step("finding orphaned tasks", async () => {
    for (const taskId of await findOrphanedTasks(deps.db, 100))
      await step(`queueing task ${taskId}`, () => queueOrphan(deps, taskId));
  });
  await step("delivering stranded Slack messages", () =>
    deliverOutbox(deps, { olderThanMs: STRANDED_OUTBOX_MS }),
  );
  await step("enforcing deadlines", () => enforceDeadlines(deps));
  await step("stopping tasks whose thread Slack refuses", () => stopTasksWithLostThread(deps));
  await step("sending by DM the answers Slack refused", () => sendLostAnswers(deps));
}

/**
 * A job for a task no run holds, unless one already waits for it (queued, or due to retry after a
 * failed try): one more each sweep, on every replica, would start another chain of retries, model
 * calls and a dead letter every 15 s while the model is down. A waiting job is due within its
 * backoff (60 s at most); one held back for a new task's run where it was accepted, which never
 * began (its accept lost the COMMIT's answer and Slack's retry never came), runs now rather than
 * when that lease would have run out. The job of a worker that died is active, not waiting, so its
 * task is queued as soon as before.
 */
async function queueOrphan(deps: RuntimeDeps, taskId: string): Promise<void> {
  await deps.db.transaction().execute(async (tx) => {
    if (await lockOrphanedTask(tx, taskId)) await deps.queue.enqueueUnlessWaiting(tx, taskId);
  });
}
