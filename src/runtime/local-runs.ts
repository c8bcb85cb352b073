import type { Logger } from "../log.ts";

/**
 * A new task's first run, started in the process that accepted it as soon as the accept commits,
 * instead of after its job has gone through the queue. The job is still written in the accept's
 * transaction and stays the safety net: when it reaches this process while the run is under way, it
 * waits for the run and fails as the run fails (so the queue retries it); when this process dies,
 * the task's lease runs out and the job, or the sweeper, takes the task over as after any crash.
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
  /** The task's run in this process, if one is reserved or under way. */
  running(taskId: string): Promise<void> | undefined;
  /** Waits for every run under way (at shutdown). */
  drain(): Promise<void>;
}

interface Slot {
  done: Promise<void>;
  settle: (outcome: { error?: unknown }) => void;
}

/** `capacity` runs at most at once, beside the queue's own workers; 0 sends every task through the queue. */
export function localRuns(capacity: number, log: Logger): LocalRuns {
  const slots = new Map<string, Slot>();
  const free = (taskId: string, slot: Slot, outcome: { error?: unknown }) => {
    if (slots.get(taskId) === slot) slots.delete(taskId);
    slot.settle(outcome);
  };
  return {
    reserve(taskId) {
      if (slots.size >= capacity || slots.has(taskId)) return false;
      let settle: Slot["settle"] = () => {};
      const done = new Promise<void>((resolve, reject) => {
        settle = ({ error }) => (error === undefined ? resolve() : reject(error));
      });
      // The job that waits on it sees the failure; nobody waiting is not an unhandled rejection.
      done.catch(() => {});
      slots.set(taskId, { done, settle });
      return true;
    },
    giveBack(taskId) {
      const slot = slots.get(taskId);
      if (slot) free(taskId, slot, {});
    },
    start(taskId, run) {
      const slot = slots.get(taskId);
      if (!slot) return;
      // After the acknowledgement has been written: Slack waits for nothing of the run.
      setImmediate(() => {
        run().then(
          () => free(taskId, slot, {}),
          (error: unknown) => {
            log.warn({ err: error, taskId }, "task run failed; its job will retry it");
            free(taskId, slot, { error: error ?? new Error("the run failed") });
          },
        );
      });
    },
    running(taskId) {
      return slots.get(taskId)?.done;
    },
    async drain() {
      await Promise.allSettled([...slots.values()].map((s) => s.done));
    },
  };
}
