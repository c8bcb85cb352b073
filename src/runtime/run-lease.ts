// The lease a run holds its task by: its name, kept renewed through slow work, given up at the end.
import { isConnectionLost } from "../db/database.ts";
import { releaseLease, renewLease } from "../db/lease.repository.ts";
import type { Delivered } from "../db/outbox-marks.repository.ts";
import type { RuntimeDeps } from "./deps.ts";
import { LeaseLeftError } from "./failed-tries.ts";
import type { RunDeliveries } from "./run-deliveries.ts";
import type { RunLane } from "./turn-lane.ts";

/**
 * How long a run that ends with the database away waits for it, to give its task up (or, failed,
 * to bring its job forward).
 */
const RELEASE_PATIENCE_MS = 30_000;
let runs = 0;

/** The name a run holds a task's lease by: the process's worker id and the run's number in it. */
export function runWorker(deps: RuntimeDeps): string {
  return `${deps.workerId}/${++runs}`;
}

/**
 * Statements and posts still under way (after a failed turn) finish first, the lease kept through
 * them; the release marks what the posts sent. A lease this fails to give up is taken over once it
 * runs out, and that claim records a lost try unless a failed try names this run: the error does.
 */
export async function giveUp(
  deps: RuntimeDeps,
  taskId: string,
  lane: RunLane,
  deliveries: RunDeliveries,
) {
  try {
    const delivered = await holdingLease(deps, taskId, async () => {
      await lane.drained();
      return deliveries.drain();
    });
    return await releaseWhenReachable(deps, taskId, delivered);
  } catch (error) {
    throw new LeaseLeftError(deps.workerId, error);
  }
}

/**
 * Gives the task up, waiting a while for a database that is away (a restart, a failover): a lease
 * left held would keep the task's retry, here or on any replica, waiting until the lease ran out.
 */
function releaseWhenReachable(deps: RuntimeDeps, taskId: string, delivered: Delivered[]) {
  return whenReachable(
    deps,
    { taskId, waiting: "database unreachable; giving the task up once back" },
    () => releaseLease(deps.db, taskId, deps.workerId, delivered),
  );
}

/**
 * `attempt`, tried again while the database is away (up to 30 s, and never past the lease: by then
 * the task is taken over anyway). A connection the server ended fails too, once, if its pool hands
 * it out before it has read the server's goodbye: a server process slow to end (a busy machine)
 * leaves such a connection idle in the pool for a while after a failover or a restart.
 */
export async function whenReachable<T>(
  deps: RuntimeDeps,
  what: { taskId: string; waiting: string },
  attempt: () => Promise<T>,
): Promise<T> {
  const giveUpAt = Date.now() + Math.min(deps.leaseMs, RELEASE_PATIENCE_MS);
  for (let wait = 200; ; wait = Math.min(wait * 2, 2_000)) {
    try {
      return await attempt();
    } catch (error) {
      if (!isConnectionLost(error) || Date.now() + wait > giveUpAt) throw error;
      if (wait === 200) deps.log.warn({ err: error, taskId: what.taskId }, what.waiting);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

/**
 * Runs `work` (a turn: a local model may take minutes to answer, an external system as long to run a
 * tool) with the task's lease renewed every third of it, so a live run is not taken over while it
 * waits, and a dead one still is, soon. While a write tool's transaction holds the task locked, the
 * lock keeps it, and the turn's statement extends the lease as it commits.
 */
export async function holdingLease<T>(deps: RuntimeDeps, taskId: string, work: () => Promise<T>) {
  // One renewal at a time: a slow database must not pile them up.
  let renewing = false;
  const renew = () => {
    if (renewing) return;
    renewing = true;
    renewLease(deps.db, taskId, deps.workerId, deps.leaseMs)
      .then(
        // Taken over: nothing left to renew; the turn's own statement will find it out and stop.
        (held) => held || clearInterval(timer),
        (error: unknown) =>
          deps.log.warn({ err: error, taskId }, "could not renew the task's lease"),
      )
      .finally(() => {
        renewing = false;
      });
  };
  const timer = setInterval(renew, deps.leaseMs / 3);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}
