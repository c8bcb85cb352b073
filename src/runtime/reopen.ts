import type { Tx } from "../db/database.ts";
import { takenOverEscalation } from "../db/escalations.repository.ts";
import { type AuditInput, audit } from "../db/ledger.repository.ts";
import { enqueueOutbox } from "../db/outbox.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import { updateTask } from "../db/tasks.repository.ts";
import { mentionOf } from "./approval-deadline.ts";
import { isDirectMessage } from "./decision-place.ts";
import type { RuntimeDeps } from "./deps.ts";
import { quotedReply } from "./direct-replies.ts";
import { takenOverCard } from "./escalation-cards.ts";
import { post } from "./messages.ts";

// A task that ended opens again when someone replies in its thread: an agent's goes back to the
// agent that owned it last (the accept, the wake-up check after it, and a run's release, in SQL),
// a person's to that person. Each reopening is audited, with who replied and whom it went back to.

/** Whether a reply reopens the task for the agent that owned it last. */
export const reopensForAgent = (task: Pick<TaskRow, "status" | "owner_kind">): boolean =>
  (task.status === "done" || task.status === "failed") && task.owner_kind === "agent";

/**
 * Opens an agent's ended task again, as a person's reply does: the hop limit and the model's errors
 * count afresh, and the reason it failed is gone. Audited by the caller (`agentTaskReopened`).
 */
export async function reopenForAgent(tx: Tx, taskId: string): Promise<void> {
  await updateTask(tx, taskId, {
    status: "active",
    modelErrors: 0,
    failureReason: null,
    hopsAfresh: true,
  });
}

/** The audit of an agent's ended task opened again by `author`'s reply (the release's, in SQL). */
export function agentTaskReopened(task: TaskRow, author: string): AuditInput {
  return {
    taskId: task.id,
    actor: { kind: "human", id: author },
    kind: "task_reopened",
    data: { owner: task.owner_id, owner_kind: "agent", was: task.status },
  };
}

/**
 * The person who closed a task (`/baton done`) owns it again when someone replies in its thread:
 * they are paged there (unless the reply is theirs), and their escalation card offers to hand the
 * work to an agent again.
 */
export async function reopenForItsPerson(
  deps: RuntimeDeps,
  tx: Tx,
  task: TaskRow,
  reply: { author: string; channel: string; text: string },
) {
  const { author } = reply;
  await updateTask(tx, task.id, { status: "waiting_human" });
  await audit(tx, {
    taskId: task.id,
    actor: { kind: "human", id: author },
    kind: "task_reopened",
    data: { owner: task.owner_id },
  });
  // Led by its people's mentions, which page them; a channel owner reads its own thread.
  const pages = task.owner_id
    .split(",")
    .filter((id) => /^[UWS][A-Z0-9]+$/.test(id) && id !== author)
    .map(mentionOf);
  const text = `${pages.join(" ")} There is a new reply since this was marked done, so it is open again. Close it with \`/baton done\` and a link to this thread once it is handled.`;
  // A direct message's person cannot see its thread: they are paged in their card's thread, and
  // the requester is told where the reply went.
  const held = isDirectMessage(task.channel_id)
    ? await takenOverEscalation(tx, task.id)
    : undefined;
  const where =
    held?.card_channel && held.card_ts
      ? { channel: held.card_channel, threadTs: held.card_ts }
      : { channel: task.channel_id, threadTs: task.thread_ts };
  // Paged where they cannot read the reply (it is in the requester's DM): it is quoted for them.
  const unseen = where.channel !== task.channel_id && reply.channel === task.channel_id;
  const said = unseen
    ? `${text} The requester wrote in their direct message with Baton: ${quotedReply(reply.text)}`
    : text;
  const messages = [post(task, { kind: "notice", ...where, text: said.trimStart() })];
  if (where.channel !== task.channel_id)
    messages.push(
      post(task, {
        kind: "notice",
        channel: task.channel_id,
        threadTs: task.thread_ts,
        text: "⏳ Passed on to the person who handled this; they will get back to you.",
      }),
    );
  const card = await takenOverCard(deps, tx, task);
  await enqueueOutbox(tx, card ? [...messages, card] : messages);
}
