import type { AgentsFile } from "../config/agents-schema.ts";
import type { EscalationNote } from "../core/handoffs/note.ts";

/**
 * Where people decide on a task's card (an approval, an escalation): in the task's thread, unless
 * the thread is a direct message with Baton, which only its requester can see. Then the card goes
 * to `channel` if given (an escalation lane's), else `policies.decisions_channel`, else the digest
 * channel, as a message of its own; with none of them set it stays in the thread.
 */
export function decisionPlace(
  file: AgentsFile,
  task: { channel_id: string; thread_ts: string },
  channel?: string,
): { channel: string; threadTs?: string } {
  if (!isDirectMessage(task.channel_id))
    return { channel: task.channel_id, threadTs: task.thread_ts };
  const elsewhere = channel ?? file.policies.decisions_channel ?? file.digest.channel;
  return elsewhere
    ? { channel: elsewhere }
    : { channel: task.channel_id, threadTs: task.thread_ts };
}

/** A channel id of a direct message: only the person and Baton are in it. */
export function isDirectMessage(channel: string): boolean {
  return channel.startsWith("D");
}

/** An escalation's card: its lane's channel, if the lane names one, in a direct message's stead. */
export function escalationPlace(
  file: AgentsFile,
  task: { channel_id: string; thread_ts: string },
  lane: EscalationNote["lane"],
): { channel: string; threadTs?: string } {
  return decisionPlace(file, task, file.policies.lanes[lane]?.channel);
}

/**
 * Where a person opens a task: its thread, unless that is a direct message and they are not its
 * requester (nobody else can open it); then the card its people decide on, if it has one.
 */
export function openPlace(
  task: { channel_id: string; thread_ts: string },
  card: { channel: string; ts: string } | undefined,
  byRequester = false,
): { channel: string; ts: string } {
  const thread = { channel: task.channel_id, ts: task.thread_ts };
  return isDirectMessage(task.channel_id) && !byRequester && card ? card : thread;
}
