import { findTask } from "../db/tasks.repository.ts";
import type { RuntimeDeps } from "./deps.ts";
import { haltTask } from "./halt.ts";

/**
 * A task whose job exhausted its retries: the thread is told plainly that it failed, and why.
 * `failedAt`: when the job's last try failed, by the database's clock.
 */
export async function markDeadLettered(
  deps: RuntimeDeps,
  taskId: string,
  reason: string,
  failedAt: Date,
): Promise<void> {
  const task = await findTask(deps.db, taskId);
  if (!task || task.status === "done" || task.status === "failed") return;
  // Another job may have taken the task on since this one's last try failed (a reply's, a
  // decision's, the sweep's): a run that drives it goes on, and one that moved it (to an answer,
  // an approval) made this failure old news. That job's own dead letter fails it if it must.
  const halted = await haltTask(deps, task, {
    reason,
    unlessDriven: true,
    unlessMovedSince: failedAt,
  });
  if (halted) deps.log.error({ taskId }, "task dead-lettered");
  else
    deps.log.warn(
      { taskId, failedAt },
      "dead letter of a task another job has taken on since: left to it",
    );
}
