import type { Tx } from "../db/database.ts";
import { liveEscalationCard } from "../db/escalations.repository.ts";
import { enqueueOutbox, noticeWaiting } from "../db/outbox.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import { mentionOf } from "./approval-deadline.ts";
import { post } from "./messages.ts";

/**
 * The person who took a task over from its card does not follow the thread the reply is in (they
 * clicked a button, wrote nothing), so Slack tells them of nothing written there; nor does the one
 * person an open escalation was given to (told by a direct message or in the lane's channel). A
 * reply by anyone else pages them where the card is: the task's thread, or the card's own (a direct
 * message's task). Not again while an earlier page waits to be sent: it brings them to the thread,
 * later replies and all. True when a page was written; the caller delivers it once its transaction
 * commits.
 */
export async function pageHolder(
  tx: Tx,
  task: TaskRow,
  reply: { author: string; channel: string },
): Promise<boolean> {
  if (task.status !== "waiting_human" || task.owner_kind !== "human") return false;
  const card = await liveEscalationCard(tx, task.id);
  if (card?.person !== task.owner_id) return false;
  const page = await pageOnce(tx, task.id, card.person, reply.author);
  if (!page) return false;
  const where =
    card.channel === task.channel_id
      ? { channel: task.channel_id, threadTs: task.thread_ts }
      : { channel: card.channel, threadTs: card.ts };
  await enqueueOutbox(tx, [
    post(task, {
      kind: "notice",
      ...where,
      text: `${page} There is a new reply here on the task ${card.takenOver ? "you took over" : "escalated to you"}.`,
    }),
  ]);
  return true;
}

/**
 * The mention that pages `person` of a reply by `author`: none for their own reply, nor while an
 * earlier page to them waits to be sent (it brings them to the thread, later replies and all).
 */
export async function pageOnce(
  tx: Tx,
  taskId: string,
  person: string | undefined,
  author: string,
): Promise<string | undefined> {
  if (!person || person === author) return undefined;
  const page = mentionOf(person);
  return (await noticeWaiting(tx, taskId, page)) ? undefined : page;
}
