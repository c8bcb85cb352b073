import { tasksWithLostThread } from "../db/lost-threads.repository.ts";
import { findTask } from "../db/tasks.repository.ts";
import type { RuntimeDeps } from "./deps.ts";
import { haltTask } from "./halt.ts";

/** Why Slack refuses the thread, in the words the requester and the audit trail read. */
const WHY: Record<string, string> = {
  is_archived: "its Slack channel was archived",
  channel_not_found: "its Slack channel was deleted or can no longer be seen by Baton",
  not_in_channel: "Baton was removed from its Slack channel",
};

export function lostThreadWhy(slackError: string): string {
  return WHY[slackError] ?? "Slack refuses Baton's messages in its thread";
}

/**
 * Stops the open tasks whose thread Slack refuses for good (see tasksWithLostThread): left alone,
 * each would wait for ever on a card or a reply nobody can see. The requester is told by DM, the
 * one place Baton can still reach them. Not while a run drives the task: the next sweep stops it,
 * once the run has let go. A stopped task is failed, so a sweep never stops it twice.
 */
export async function stopTasksWithLostThread(deps: RuntimeDeps): Promise<void> {
  for (const { taskId, slackError } of await tasksWithLostThread(deps.db, 50)) {
    const task = await findTask(deps.db, taskId);
    if (!task) continue;
    const why = lostThreadWhy(slackError);
    const notice = {
      kind: "direct_message" as const,
      user: task.requester_id,
      text: `I stopped working on your request "${task.title}": ${why}, so nobody could see my answers or approve what it needed. Ask me again in a channel I am in if you still need it.`,
    };
    await haltTask(deps, task, {
      reason: `${why} (Slack: ${slackError})`,
      unlessDriven: true,
      notice,
    });
  }
}
