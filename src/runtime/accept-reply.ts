import type { Tx } from "../db/database.ts";
import type { TaskRow } from "../db/schema.ts";
import { lockTask } from "../db/tasks.repository.ts";
import { insertInput } from "../db/turn-reads.repository.ts";
import type { IncomingMessage } from "./accept.ts";
import { isDirectMessage } from "./decision-place.ts";
import type { RuntimeDeps } from "./deps.ts";
import { passOnReply } from "./direct-replies.ts";
import { handOnNamed, handToAgent } from "./hand-on.ts";
import {
  agentTaskReopened,
  reopenForAgent,
  reopenForItsPerson,
  reopensForAgent,
} from "./reopen.ts";
import { waitingOnDecisionWords, waitingOnPersonWords } from "./waiting-replies.ts";

// A message in a task's thread, within the accept's transaction: the work handed on, or the reply
// kept for the task's owner, with a run queued to read it unless the task waits on a person.

/** What a reply leaves to do once its accept commits. */
export interface ReplyFollowUps {
  /** A reply kept for an agent's task waiting on an approval, read without the task's lock. */
  waitedOn?: string;
  /** A reply in a direct message passed on to its task's card: delivered once the accept commits. */
  passedOn?: string;
  /**
   * What the writer of a reply kept until an approval is decided is told (an edit was told before);
   * or of a mention no agent reads while a person holds the task or decides on its escalation.
   */
  waitNote?: string;
}

export async function acceptReply(
  deps: RuntimeDeps,
  tx: Tx,
  existing: TaskRow,
  message: IncomingMessage,
): Promise<ReplyFollowUps> {
  // A person's task may be closed (`/baton done`) this very moment, and an answered one opened
  // by another reply: decide from its locked row, so only one reply reopens (and audits) it.
  const task =
    existing.owner_kind === "human" || reopensForAgent(existing)
      ? ((await lockTask(tx, existing.id)) ?? existing)
      : existing;
  // An edit is read as what it says, never as an order to hand the work on.
  const handOn =
    message.mentioned && !message.editTs ? await handOnNamed(deps, tx, task, message) : undefined;
  if (handOn) {
    await handToAgent(deps, tx, task, message, handOn);
    return {};
  }
  const text = await addInput(tx, task, message);
  const reply = { author: message.user, channel: message.channel, text };
  const passedOn = (await tellItsPeople(deps, tx, task, reply)) ? task.id : undefined;
  return { passedOn, ...(await queueOrKeep(deps, tx, task, message, passedOn)) };
}

/** The reply, as the agent will read it; an ended agent's task opens again. Returns that text. */
async function addInput(tx: Tx, task: TaskRow, message: IncomingMessage): Promise<string> {
  const reopens = reopensForAgent(task);
  // The agent reads the edited text whole, told it corrects what it read before.
  const text = message.editTs ? `(edited) ${message.text}` : message.text;
  await insertInput(tx, { taskId: task.id, authorId: message.user, text }, [
    {
      taskId: task.id,
      actor: { kind: "human", id: message.user },
      kind: "message_received",
      data: { text, ts: message.ts, ...(message.editTs && { editTs: message.editTs }) },
    },
    // In the input's statement: the hot path gains no round trip.
    ...(reopens ? [agentTaskReopened(task, message.user)] : []),
  ]);
  if (reopens) await reopenForAgent(tx, task.id);
  return text;
}

/** True when a notice was written that the caller delivers once the accept commits. */
async function tellItsPeople(
  deps: RuntimeDeps,
  tx: Tx,
  task: TaskRow,
  reply: { author: string; channel: string; text: string },
): Promise<boolean> {
  // A reply to a task a person closed goes back to them: no agent has its context.
  if (task.status === "done" && task.owner_kind === "human") {
    await reopenForItsPerson(deps, tx, task, reply);
    return false;
  }
  // Passed on to the people who hold or decide the task, where they work from.
  return passOnReply(deps, tx, task, reply);
}

/** A run queued for the reply; or, while the task waits on a person, none. */
async function queueOrKeep(
  deps: RuntimeDeps,
  tx: Tx,
  task: TaskRow,
  message: IncomingMessage,
  passedOn: string | undefined,
): Promise<Omit<ReplyFollowUps, "passedOn">> {
  // A task waiting on a person has no turn to run; a reopened one's run sends the notice.
  if (task.status !== "waiting_human") {
    await deps.queue.enqueue(tx, task.id);
    return {};
  }
  if (task.owner_kind !== "agent") {
    // Each message in a direct message is written to Baton: passed on to the card (see passOnReply).
    const asked = message.mentioned && !message.editTs && !isDirectMessage(message.channel);
    const waitNote = asked ? await waitingOnPersonWords(tx, task, message.user) : undefined;
    return waitNote ? { waitNote } : {};
  }
  // A reply passed on from a direct message: its requester was told they hear back there.
  const waitNote =
    !message.editTs && !passedOn ? await waitingOnDecisionWords(deps, tx, task.id) : undefined;
  return { waitedOn: task.id, waitNote };
}
