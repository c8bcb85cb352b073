import { headOf } from "../core/text.ts";
import { pendingApprovalCard } from "../db/approvals.repository.ts";
import type { Tx } from "../db/database.ts";
import { liveEscalationCard } from "../db/escalations.repository.ts";
import { enqueueOutbox, noticeWaiting } from "../db/outbox.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import { isDirectMessage } from "./decision-place.ts";
import type { RuntimeDeps } from "./deps.ts";
import { pageFor, pageHolder } from "./held-replies.ts";
import { post } from "./messages.ts";

/** As much of a reply as a notice quotes: the rest is in the task's story. */
const QUOTED_MAX = 3_000;

/** What a requester's reply passed on opens with, by which one waiting to be sent is found. */
const PASSED_ON = "The requester replied in their direct message with Baton:";

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
  deps: RuntimeDeps,
  tx: Tx,
  task: TaskRow,
  reply: { author: string; channel: string; text: string },
): Promise<boolean> {
  return (await passOnDirectReply(deps, tx, task, reply)) || pageHolder(deps, tx, task, reply);
}

/**
 * A direct message's thread is its requester's alone. While people hold its task (an escalation open
 * or taken over) or decide on its call (an approval), a reply written there is passed on to the
 * thread of the card they work from, where they can read it: the person holding it, or the
 * escalation's owners, are paged (see pageFor), and those deciding on an approval find it under its
 * card. True when a notice was written; the caller delivers it once its transaction commits.
 */
async function passOnDirectReply(
  deps: RuntimeDeps,
  tx: Tx,
  task: TaskRow,
  reply: { author: string; channel: string; text: string },
): Promise<boolean> {
  if (!isDirectMessage(task.channel_id) || reply.channel !== task.channel_id) return false;
  if (task.status !== "waiting_human") return false;
  const card:
    | { channel: string; ts: string; person?: string; owner?: { kind: string; id: string } }
    | undefined =
    task.owner_kind === "human"
      ? await liveEscalationCard(tx, task.id)
      : await pendingApprovalCard(tx, task.id);
  if (!card) return false;
  // Quoted every time, since they cannot read it elsewhere; its owner paged once while a page
  // waits to go (see pageFor).
  const { owner, person } = card;
  const reached = owner && (await pageFor(deps, { owner, person }, reply.author));
  const page =
    reached && !(await noticeWaiting(tx, task.id, reached.mention ?? PASSED_ON))
      ? reached
      : undefined;
  await enqueueOutbox(tx, [
    post(task, {
      kind: "notice",
      channel: card.channel,
      threadTs: card.ts,
      // A channel's page: the quote, sent to the channel too (a thread nobody follows reaches nobody).
      ...(page?.channel === card.channel && { broadcast: true }),
      text: `${page?.mention ? `${page.mention} ` : ""}${PASSED_ON} ${quotedReply(reply.text)}`,
    }),
  ]);
  return true;
}
