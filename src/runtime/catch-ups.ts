import { keyRecorded, recordKey } from "../db/events.repository.ts";
import { enqueueOutbox } from "../db/outbox.repository.ts";
import { findTaskByThread } from "../db/tasks.repository.ts";
import type { RuntimeDeps, ThreadCatchUp } from "./deps.ts";
import { post } from "./messages.ts";
import { deliverOutbox } from "./outbox.ts";

/** What the thread of a mention whose earlier replies could not be read is told. */
export const UNREAD_REPLIES_NOTICE =
  "⚠️ Your mention reached me late, and I could not read the replies written in this thread " +
  "before it did. If anything in them matters, please write it here again.";

// Keys of a mention's catch-up, beside the events': its thread read to its end; its thread told.
const readKey = (thread: ThreadCatchUp) => `catchup-read:${thread.channel}:${thread.after}`;
const toldKey = (thread: ThreadCatchUp) => `catchup-unread:${thread.channel}:${thread.after}`;

/**
 * A late mention's thread was read to its end (by the mention's delivery or one of its catch-up
 * jobs): a catch-up of the same mention that fails later lost nothing. The task was there before
 * that read, so each reply written after it came to the task by its own event.
 */
export async function recordThreadRead(deps: RuntimeDeps, thread: ThreadCatchUp): Promise<void> {
  await recordKey(deps.db, readKey(thread));
}

/**
 * Whether the mention's thread was read to its end already (by its delivery or another of its
 * jobs): a catch-up job due after that has nothing to read, and asks Slack nothing.
 */
export async function threadWasRead(deps: RuntimeDeps, thread: ThreadCatchUp): Promise<boolean> {
  return keyRecorded(deps.db, readKey(thread));
}

/** `told`: the task whose thread a notice was queued for. */
type Outcome = { read: boolean; told?: string };

/**
 * A late mention's catch-up that exhausted its retries: its task's thread is told plainly, once a
 * mention, that the replies written before the mention reached Baton were not read, in Baton's own
 * name as its other notices. Not when the thread was read to its end all the same (by a redelivery
 * of the mention, or another of its jobs), nor with no task there.
 */
export async function tellRepliesUnread(
  deps: RuntimeDeps,
  thread: ThreadCatchUp,
  reason: string,
): Promise<void> {
  const outcome = await deps.db.transaction().execute(async (tx): Promise<Outcome> => {
    if (await keyRecorded(tx, readKey(thread))) return { read: true };
    // No task: nothing in the thread goes on without the replies.
    const task = await findTaskByThread(tx, thread.channel, thread.threadTs);
    // Once a mention: a retry of this dead letter, or another job's for the mention, says no more.
    if (!task || !(await recordKey(tx, toldKey(thread), task.id))) return { read: false };
    await enqueueOutbox(tx, [
      post(task, {
        kind: "notice",
        channel: task.channel_id,
        threadTs: task.thread_ts,
        text: UNREAD_REPLIES_NOTICE,
      }),
    ]);
    return { read: false, told: task.id };
  });
  if (outcome.read) {
    deps.log.warn(
      { thread },
      "a late mention's catch-up failed after its thread was read: nothing lost",
    );
    return;
  }
  deps.log.error({ thread }, `the replies before a late mention were not read: ${reason}`);
  if (outcome.told) await deliverOutbox(deps, { taskId: outcome.told });
}
