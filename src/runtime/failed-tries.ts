import { audit } from "../db/ledger.repository.ts";
import { maskedFirstLine } from "../log.ts";
import type { RuntimeDeps } from "./deps.ts";

/** As much of an error as a failed try's audit keeps (a dead letter's reason keeps as much). */
const ERROR_CHARS = 300;

/**
 * A run that failed and could not give its task's lease up either (the database stayed away): the
 * error it failed with, naming the run. The claim that takes the task over once the lease runs out
 * records a lost try (see claimLease) unless a failed try names the run already.
 */
export class LeaseLeftError extends Error {
  readonly run: string;
  constructor(run: string, cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = "LeaseLeftError";
    this.run = run;
  }
}

/**
 * One audit event per failed try of a task's run, retried or not: the trail shows an outage (a
 * model server down, a tool's 5xx, a database blip) try by try, not only the last error. Written
 * from the worker's failure path, it never fails it: with the database away, it is logged and left.
 * A try whose worker died records nothing here: the claim that takes its task over records it.
 */
export async function recordFailedTry(
  deps: Pick<RuntimeDeps, "db" | "log">,
  failed: { taskId: string; error: unknown; retried: boolean },
): Promise<void> {
  const { error } = failed;
  try {
    await audit(deps.db, {
      taskId: failed.taskId,
      actor: { kind: "system", id: "baton" },
      kind: "attempt_failed",
      data: {
        error: errorLine(error),
        retried: failed.retried,
        ...(error instanceof LeaseLeftError && { run: error.run }),
      },
    });
  } catch (auditError) {
    deps.log.warn(
      { err: auditError, taskId: failed.taskId },
      "could not audit a failed try of the task",
    );
  }
}

/** The error's first line, secrets masked before it is cut: a cut must not leave half a key. */
function errorLine(error: unknown): string {
  return maskedFirstLine(error instanceof Error ? error.message : String(error), ERROR_CHARS);
}
