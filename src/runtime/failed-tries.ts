import { audit } from "../db/ledger.repository.ts";
import { maskedFirstLine } from "../log.ts";
import type { RuntimeDeps } from "./deps.ts";

/** As much of an error as a failed try's audit keeps (a dead letter's reason keeps as much). */
const ERROR_CHARS = 300;

/**
 * One audit event per failed try of a task's run, retried or not: the trail shows an outage (a
 * model server down, a tool's 5xx, a database blip) try by try, not only the last error. Written
 * from the worker's failure path, it never fails it: with the database away, it is logged and left.
 */
export async function recordFailedTry(
  deps: Pick<RuntimeDeps, "db" | "log">,
  failed: { taskId: string; error: unknown; retried: boolean },
): Promise<void> {
  try {
    await audit(deps.db, {
      taskId: failed.taskId,
      actor: { kind: "system", id: "baton" },
      kind: "attempt_failed",
      data: { error: errorLine(failed.error), retried: failed.retried },
    });
  } catch (error) {
    deps.log.warn(
      { err: error, taskId: failed.taskId },
      "could not audit a failed try of the task",
    );
  }
}

/** The error's first line, secrets masked before it is cut: a cut must not leave half a key. */
function errorLine(error: unknown): string {
  return maskedFirstLine(error instanceof Error ? error.message : String(error), ERROR_CHARS);
}
