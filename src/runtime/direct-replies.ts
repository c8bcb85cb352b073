import { headOf } from "../core/text.ts";
import { pendingApprovalCard } from "../db/approvals.repository.ts";
import type { Tx } from "../db/database.ts";
import { liveEscalationCard } from "../db/escalations.repository.ts";
import { enqueueOutbox } from "../db/outbox.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import { isDirectMessage } from "./decision-place.ts";
import { pageHolder, pageOnce } from "./held-replies.ts";
import { post } from "./messages.ts";

/** As much of a reply as a notice quotes: the rest is in the task's story. */
const QUOTED_MAX = 3_000;

/** A requester's reply, quoted for people who cannot open the direct message it was written in. */
export function quotedReply(text: string): string {
  const shown = headOf(text, QUOTED_MAX);
  return `"${shown}${shown.length < text.length ? "…" : ""}"`;
}

/**
 * A reply to a task people hold or decide on, passed on to them where they work from (see below, and
 * pageHolder). True when a notice was written; the caller delivers it once its transaction commits.
 */
export async function passOnReply(
  tx: Tx,
  task: TaskRow,
  reply: { author: string; channel: string; text: string },
): Promise<boolean> {
  return (await passOnDirectReply(tx, task, reply)) || pageHolder(tx, task, reply);
}

/**
 * A direct message's thread is its requester's alone. While people hold its task (an escalation open
 * or taken over) or decide on its call (an approval), a reply written there is passed on to the
 * thread of the card they work from, where they can read it: the person holding it is paged, and
 * those deciding find it under the card they decide on. True when a notice was written; the caller
 * delivers it once its transaction commits.
 */
async function passOnDirectReply(
  tx: Tx,
  task: TaskRow,
  reply: { author: string; channel: string; text: string },
): Promise<boolean> {
  if (!isDirectMessage(task.channel_id) || reply.channel !== task.channel_id) return false;
  if (task.status !== "waiting_human") return false;
  const card: { channel: string; ts: string; person?: string | undefined } | undefined =
    task.owner_kind === "human"
      ? await liveEscalationCard(tx, task.id)
      : await pendingApprovalCard(tx, task.id);
  if (!card) return false;
  // Quoted every time, since they cannot read it elsewhere; paged once while a page waits to go.
  const page = await pageOnce(tx, task.id, card.person, reply.author);
  const holder = page ? `${page} ` : "";
  await enqueueOutbox(tx, [
    post(task, {
      kind: "notice",
      channel: card.channel,
      threadTs: card.ts,
      text: `${holder}The requester replied in their direct message with Baton: ${quotedReply(reply.text)}`,
    }),
  ]);
  return true;
}
