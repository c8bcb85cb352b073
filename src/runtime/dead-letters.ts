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
  await haltTask(deps, task, { reason });
}
