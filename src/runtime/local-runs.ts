import { within } from "../core/duration.ts";
import type { Logger } from "../log.ts";

/**
 * A new task's first run, started in the process that accepted it as soon as the accept commits,
 * instead of after its job has gone through the queue. The job is still written in the accept's
 * transaction, due when the run's lease would run out: the run marks it done, or due at once when
 * it fails (the queue then retries it); if this process dies, it takes the task over.
 */
export interface LocalRuns {
  /**
   * Keeps a slot for a task about to be started here. False when every slot is busy: the task then
   * goes through the queue alone. A kept slot is started or given back.
   */
  reserve(taskId: string): boolean;
  /** The accept did not commit: the slot is free again. */
  giveBack(taskId: string): void;
  /** Runs the reserved task once the current request has been answered. */
  start(taskId: string, run: () => Promise<void>): void;
  /** Waits for every run under way. */
  drain(): Promise<void>;
  /**
   * At shutdown: no slot is kept from now on (a job still running may accept a message, whose task
   * then goes through the queue), and the runs under way are waited for, `waitMs` at most (what is
   * left of the stop's deadline).
   */
  stop(waitMs: number): Promise<void>;
}

/** `capacity` runs at most at once, beside the queue's own workers; 0 sends every task through the queue. */
export function localRuns(capacity: number, log: Logger): LocalRuns {
  // A reserved slot has no run yet.
  const slots = new Map<string, Promise<void> | undefined>();
  let stopping = false;
  const runs: LocalRuns = {
    reserve(taskId) {
      if (stopping || slots.size >= capacity || slots.has(taskId)) return false;
      slots.set(taskId, undefined);
      return true;
    },
    giveBack(taskId) {
      if (slots.get(taskId) === undefined) slots.delete(taskId);
    },
    start(taskId, run) {
      if (!slots.has(taskId) || slots.get(taskId)) return;
      // After the acknowledgement has been written: Slack waits for nothing of the run.
      const started = new Promise<void>((resolve) => setImmediate(resolve))
        .then(run)
        .catch((error: unknown) => {
          log.warn({ err: error, taskId }, "task run failed; its job will retry it");
        })
        .finally(() => slots.delete(taskId));
      slots.set(taskId, started);
    },
    async drain() {
      await Promise.all(slots.values());
    },
    async stop(waitMs) {
      stopping = true;
      // A run waiting on a slow model or tool would hold the stop for minutes. One cut short here
      // is as one whose process died: its task resumes from its last commit once its lease runs out.
      const drained = await within(
        runs.drain().then(() => true),
        waitMs,
      );
      if (!drained)
        log.warn(
          { tasks: [...slots.keys()] },
          "stopping without the task runs still under way: each resumes from its last step once its lease runs out",
        );
    },
  };
  return runs;
}
