import { within } from "../core/duration.ts";
import { audit } from "../db/ledger.repository.ts";
import { maskedFirstLine } from "../log.ts";
import type { RuntimeDeps } from "./deps.ts";

/** As much of an error as a failed try's audit keeps (a dead letter's reason keeps as much). */
const ERROR_CHARS = 300;

/**
 * How long the failure path waits for the record. Unbounded, a database that does not answer held
 * it for the pool's connect timeout (10 s), or, on a connection whose peer went silent, until TCP
 * gave up; the job's retry and the next task waited behind it.
 */
export const RECORD_WAIT_MS = 2_000;

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
 * from the worker's failure path, it never fails it, nor holds it up past RECORD_WAIT_MS: with the
 * database away or silent, what it could not record is logged, and the failure path goes on.
 * A try whose worker died records nothing here: the claim that takes its task over records it.
 */
export async function recordFailedTry(
  deps: Pick<RuntimeDeps, "db" | "log">,
  failed: { taskId: string; error: unknown; retried: boolean },
): Promise<void> {
  const { error } = failed;
  const data = {
    error: errorLine(error),
    retried: failed.retried,
    ...(error instanceof LeaseLeftError && { run: error.run }),
  };
  const recorded = audit(deps.db, {
    taskId: failed.taskId,
    actor: { kind: "system", id: "baton" },
    kind: "attempt_failed",
    data,
  }).then(
    () => true,
    (auditError: unknown) => {
      deps.log.warn(
        { err: auditError, taskId: failed.taskId, attempt: data },
        "could not audit a failed try of the task",
      );
      return false;
    },
  );
  // Left to finish on its own: should the database answer later, the try is recorded then.
  if ((await within(recorded, RECORD_WAIT_MS)) === undefined)
    deps.log.warn(
      { taskId: failed.taskId, attempt: data, waitedMs: RECORD_WAIT_MS },
      "the database did not record a failed try of the task in time; the failure goes on without it",
    );
}

/** The error's first line, secrets masked before it is cut: a cut must not leave half a key. */
function errorLine(error: unknown): string {
  return maskedFirstLine(error instanceof Error ? error.message : String(error), ERROR_CHARS);
}
