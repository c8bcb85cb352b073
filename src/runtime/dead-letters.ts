import { findTask } from "../db/tasks.repository.ts";
import type { RuntimeDeps } from "./deps.ts";
import { haltTask } from "./halt.ts";

/** A task whose job exhausted its retries: the thread is told plainly that it failed, and why. */
export async function markDeadLettered(
  deps: RuntimeDeps,
  taskId: string,
  reason: string,
): Promise<void> {
  const task = await findTask(deps.db, taskId);
  if (!task || task.status === "done" || task.status === "failed") return;
  deps.log.error({ taskId }, "task dead-lettered");
  // Another job may have taken the task on since this one's last try failed (the sweep queues one
  // for an active task no run holds): that run goes on, and its own job fails it if it must.
  await haltTask(deps, task, { reason, unlessDriven: true });
}
