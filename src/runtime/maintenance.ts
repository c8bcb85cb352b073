import type { AgentsFile } from "../config/agents-schema.ts";
import { findOrphanedTasks } from "../db/lease.repository.ts";
import { enforceDeadlines } from "./deadlines.ts";
import type { RuntimeDeps } from "./deps.ts";
import { deliverOutbox } from "./outbox.ts";

const EVERY_MS = 15_000;
/** An outbox row this old was not delivered by its writer: a process died, or Slack failed. */
const STRANDED_OUTBOX_MS = 30_000;

/**
 * Background work that makes crashes harmless: tasks whose worker died are queued again,
 * stranded Slack messages are delivered (once), and approvals past their deadline expire.
 * Every step is idempotent, so several replicas may run it at once.
 */
export function startMaintenance(deps: RuntimeDeps, _file: AgentsFile): () => Promise<void> {
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
  return async () => {
    clearInterval(timer);
    await running;
  };
}

export async function runMaintenance(deps: RuntimeDeps): Promise<void> {
  for (const taskId of await findOrphanedTasks(deps.db, 100))
    await deps.queue.enqueue(deps.db, taskId);
  await deliverOutbox(deps, { olderThanMs: STRANDED_OUTBOX_MS });
  await enforceDeadlines(deps);
}
