import type { AgentDirectory } from "../core/agents/directory.ts";
import type { ModelPort } from "../core/model.ts";
import type { ChatSurface, Clock } from "../core/ports.ts";
import type { ToolRegistry } from "../core/tools/tool.ts";
import type { Db, Executor } from "../db/database.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { Afterwards } from "./afterwards.ts";
import type { LocalRuns } from "./local-runs.ts";

/** Puts a task's next run on the durable queue, inside the caller's transaction when given one. */
export interface TaskQueue {
  /** Returns the job's id. */
  enqueue(
    executor: Executor,
    taskId: string,
    options?: { startAfterSeconds?: number },
  ): Promise<string>;
  /**
   * For a task no run holds (the sweep's orphans, a missed run's wake): a job for it unless one is
   * queued or due to retry already; its id if queued. A job held back for a run that never began
   * (see `runNow`) runs now, unless another waits beside it. Under the task's lock, so two
   * replicas' sweeps queue one between them.
   */
  enqueueUnlessWaiting(executor: Executor, taskId: string): Promise<string | undefined>;
  /** A job held back while the task ran where it was accepted: that run did its work. */
  done(executor: Executor, jobId: string): Promise<void>;
  /** That run failed: the job runs now, with the queue's retries, backoff and dead letters. */
  runNow(jobId: string): Promise<void>;
}

/** A thread's replies after one of its messages: what a late mention's catch-up reads. */
export interface ThreadCatchUp {
  channel: string;
  threadTs: string;
  /** The mention's ts: the replies after it are read. */
  after: string;
  /** The last reply a read Slack paused had accepted: the next read starts after it. */
  readTo?: string;
}

/** Reads a thread's replies later, from the durable queue (Slack asked to wait for them). */
export interface CatchUpQueue {
  /** Due `afterMs` from now; one per mention is kept waiting, so a second send is a no-op. */
  enqueue(thread: ThreadCatchUp, afterMs: number): Promise<void>;
}

export interface RuntimeDeps {
  db: Db;
  agents: AgentDirectory;
  tools: ToolRegistry;
  model: ModelPort;
  chat: ChatSurface;
  queue: TaskQueue;
  catchUps: CatchUpQueue;
  log: Logger;
  metrics: Metrics;
  clock: Clock;
  /** Unique per process; each run of a task holds its lease as `<workerId>/<run>`. */
  workerId: string;
  /**
   * This process's database sessions' application_name, which stamps the outbox rows it writes: a
   * row another process wrote is looked for in Slack before it is sent (see deliverOutbox).
   */
  writer: string;
  /** How long a worker may hold a task without committing; a dead worker's task is taken over after it. */
  leaseMs: number;
  /** New tasks run in the process that accepted them, their jobs waiting on those runs. */
  runs: LocalRuns;
  /** Slack's side of a person's decision, after it has committed and Slack has its answer. */
  afterwards: Afterwards;
  /**
   * Aborts as the process begins to stop. The runs under way drain, but their posts sit out no
   * 429's Retry-After: what Slack asked to wait for stays in the outbox (see deliverOutbox).
   */
  stopping: AbortSignal;
}
