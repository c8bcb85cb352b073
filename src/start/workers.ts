import type { AgentsFile } from "../config/agents-schema.ts";
import type { Config } from "../config/env.ts";
import type { JobQueue } from "../jobs/queue.ts";
import { tellRepliesUnread } from "../runtime/catch-ups.ts";
import { markDeadLettered } from "../runtime/dead-letters.ts";
import type { RuntimeDeps } from "../runtime/deps.ts";
import { runDigest } from "../runtime/digest.ts";
import { recordFailedTry } from "../runtime/failed-tries.ts";
import { startMaintenance } from "../runtime/maintenance.ts";
import { runTask } from "../runtime/run-task.ts";
import { startScheduler } from "../runtime/scheduler.ts";
import { catchUpThread } from "../slack/listeners/events.ts";
import type { SlackConnection } from "./slack.ts";
import type { StopSequence } from "./stops.ts";

/** The job queue's workers: task runs, their dead letters, late mentions' thread reads. */
export async function startWorkers(
  config: Config,
  runtime: { deps: RuntimeDeps; queue: JobQueue },
  slack: SlackConnection,
  stops: StopSequence,
): Promise<void> {
  const { deps, queue } = runtime;
  await queue.workTasks(
    config.workers,
    (taskId) => runTask(deps, taskId),
    (failed) => recordFailedTry(deps, failed),
  );
  // Together: each needs only the database and the queue's pool (closed after both), and
  // neither's slow run eats into the other's wait.
  stops.add(async (waitMs) => {
    await Promise.all([deps.runs.stop(waitMs), queue.finishJobs(waitMs)]);
  });
  await queue.workDeadLetters((taskId, reason, failedAt) =>
    markDeadLettered(deps, taskId, reason, failedAt),
  );
  await queue.workCatchUps(
    (thread) => catchUpThread(slack.handlers, slack.noWait, thread, deps.log),
    (thread, reason) => tellRepliesUnread(deps, thread, reason),
  );
}

/** Maintenance (orphaned tasks, the outbox's sweep, expiries) and the digest's scheduler. */
export function startBackground(deps: RuntimeDeps, agentsFile: AgentsFile, stops: StopSequence) {
  stops.add(startMaintenance(deps));
  const scheduler = startScheduler({
    schedule: agentsFile.digest.schedule,
    timezone: agentsFile.digest.timezone,
    log: deps.log,
    now: () => deps.clock.now(),
    run: async (fireAt) => {
      await runDigest(
        {
          db: deps.db,
          log: deps.log,
          // As reloaded since; its schedule is the one the scheduler started with.
          agentsFile: deps.agents.file,
          chat: deps.chat,
          threadLink: deps.chat.threadLink,
          writer: deps.writer,
        },
        fireAt,
        deps.workerId,
      );
    },
  });
  stops.add((waitMs) => scheduler.stop(waitMs));
}
