import { randomUUID } from "node:crypto";
import { taskTitle } from "../core/context.ts";
import type { Tx } from "../db/database.ts";
import type { Claim } from "../db/lease.repository.ts";
import { lockRateLimit, tasksStartedWithin } from "../db/rate-limits.repository.ts";
import { startTask } from "../db/tasks.repository.ts";
import type { IncomingMessage } from "./accept.ts";
import type { RuntimeDeps } from "./deps.ts";
import { recordFailedTry } from "./failed-tries.ts";
import { chooseAgent } from "./named-agent.ts";
import { runWorker, whenReachable } from "./run-lease.ts";
import { runTask } from "./run-task.ts";

// A mention outside any task starts one. When a slot is free, the task is written already leased to
// a run of this process, which starts once Slack has its answer: no queue before the first turn.

/** The task a message may start, before its transaction; `leasedTo` is set within it. */
export interface Start {
  /** Chosen first, so the event rows and the task's rows are written with it. */
  readonly id: string;
  /** The run that holds a slot to run the task here at once, if one was free. */
  readonly here: string | undefined;
  /**
   * The run the start leased its task to, once that statement is sent: only then can the COMMIT's
   * answer be lost with the lease written.
   */
  leasedTo?: string;
}

export function reserveStart(deps: RuntimeDeps): Start {
  const id = randomUUID();
  // Its job is written all the same, due when the run's lease would run out: the run marks it
  // done, or due now if the run fails; after a crash, it takes over.
  return { id, here: deps.runs.reserve(id) ? runWorker(deps) : undefined };
}

/** Whether the person started `new_tasks_per_person` tasks already; held until the accept commits. */
export async function overTaskLimit(deps: RuntimeDeps, tx: Tx, userId: string): Promise<boolean> {
  const limit = deps.agents.file.policies.rate_limits.new_tasks_per_person;
  if (!limit) return false;
  await lockRateLimit(tx, `new-tasks:${userId}`);
  return (await tasksStartedWithin(tx, userId, limit.per)) >= limit.max;
}

/** Writes the task and its job; what its run here begins from, when it has one. */
export async function startNewTask(
  deps: RuntimeDeps,
  tx: Tx,
  message: IncomingMessage,
  start: Start,
): Promise<RunStart | undefined> {
  const records = newTaskRecords(deps, start.id, message);
  const { here } = start;
  // The job first: the task's own statement is the last, sent with the COMMIT.
  const jobId = await deps.queue.enqueue(
    tx,
    start.id,
    here ? { startAfterSeconds: Math.ceil(deps.leaseMs / 1000) } : {},
  );
  start.leasedTo = here;
  const task = await startTask(tx, {
    id: start.id,
    ...(here && { lease: { worker: here, ms: deps.leaseMs } }),
    last: true,
    ...records,
  });
  if (!here) return undefined;
  const history = records.conversation.map((c) => c.message);
  return { worker: here, jobId, turn: { task, history, inputs: [], decided: false } };
}

type TaskRecords = Omit<Parameters<typeof startTask>[1], "id" | "lease" | "last">;

/** The task, its first message, the handoff to its agent, and their audits. */
function newTaskRecords(deps: RuntimeDeps, taskId: string, message: IncomingMessage): TaskRecords {
  const { agent, text } = chooseAgent(deps, message);
  return {
    task: {
      channelId: message.channel,
      threadTs: message.threadTs ?? message.ts,
      requesterId: message.user,
      title: taskTitle(text),
      requestText: text,
      owner: { kind: "agent", id: agent.id },
    },
    conversation: [{ taskId, stintNo: 1, stepNo: 0, message: { role: "user", content: text } }],
    handoff: {
      taskId,
      stepNo: 0,
      kind: "start",
      from: { kind: "human", id: message.user },
      to: { kind: "agent", id: agent.id },
      note: { request: text },
    },
    audits: [
      {
        taskId,
        actor: { kind: "human", id: message.user },
        kind: "message_received",
        data: { text, channel: message.channel, ts: message.ts },
      },
      {
        taskId,
        actor: { kind: "system", id: "baton" },
        kind: "task_started",
        data: { agent: agent.id },
      },
    ],
  };
}

/** What a task started here begins its first run from: what the accept wrote, its lease, its job. */
export interface RunStart {
  worker: string;
  jobId: string;
  turn: Claim["turn"];
}

/** The first run of a task started here; its job is done with it, or, if it fails, runs now. */
export async function runHere(deps: RuntimeDeps, taskId: string, start: RunStart): Promise<void> {
  const claim = { undelivered: false, decided: false, turn: start.turn };
  try {
    await runTask(deps, taskId, { claim, worker: start.worker });
  } catch (error) {
    await recordFailedTry(deps, { taskId, error, retried: true });
    // Retried through the queue at once. The queue's pool lost its connections too, most often,
    // and may hand out one whose server process has ended: tried again, or the retry would wait
    // for the lease to run out. Should even that fail, the job comes due with the lease.
    await whenReachable(
      deps,
      { taskId, waiting: "database unreachable; bringing the task's job forward once back" },
      () => deps.queue.runNow(start.jobId),
    ).catch((e: unknown) => {
      deps.log.warn({ err: e, taskId }, "could not bring the task's job forward");
    });
    throw error;
  }
  // Should this fail, the job comes due later and finds nothing left to do.
  await deps.queue.done(deps.db, start.jobId).catch((e: unknown) => {
    deps.log.warn({ err: e, taskId }, "could not mark the task's job done");
  });
}
