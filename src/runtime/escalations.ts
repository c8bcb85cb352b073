import type { People } from "../config/agents-schema.ts";
import { argsText } from "../core/audit-words.ts";
import type { EscalationNote } from "../core/handoffs/note.ts";
import type { ChatIntent } from "../core/ports.ts";
import { shorten } from "../core/text.ts";
import type { Executor } from "../db/database.ts";
import * as escalationsDb from "../db/escalations.repository.ts";
import { insertHandoff, writesDone } from "../db/ledger.repository.ts";
import { maskSecrets } from "../log.ts";
import { mentionOf } from "./approval-deadline.ts";
import { escalationPlace } from "./decision-place.ts";
import type { RuntimeDeps } from "./deps.ts";
import type { AgentEffects } from "./effects.ts";
import { personaOf, post } from "./messages.ts";

const DEFAULT_RESPOND_WITHIN_MS = 4 * 3_600_000;

/** "people": several users and groups, their ids joined by commas (as a task's human owner is). */
export type Owner = { kind: "user" | "group" | "people" | "channel"; id: string };

/** Every person and user group named, as one owner; undefined when none is. */
export function peopleOwner(named: People): Owner | undefined {
  const people = [...named.users, ...named.groups];
  if (people.length > 1) return { kind: "people", id: people.join(",") };
  if (named.users[0]) return { kind: "user", id: named.users[0] };
  if (named.groups[0]) return { kind: "group", id: named.groups[0] };
  return undefined;
}

/**
 * The lane's owner: every person and user group it names, or, when it names none, the members of
 * its channel (or of the task's own channel, for a lane the agents file leaves out). The channel of
 * a lane that also names people is where they hear of it.
 */
export function laneOwner(
  deps: RuntimeDeps,
  lane: EscalationNote["lane"],
  fallbackChannel: string,
) {
  const config = deps.agents.file.policies.lanes[lane];
  const people = config && peopleOwner(config);
  return {
    owner: people ?? { kind: "channel", id: config?.channel ?? fallbackChannel },
    noticeChannel: people ? config?.channel : undefined,
    respondWithinMs: config?.respond_within ?? DEFAULT_RESPOND_WITHIN_MS,
    fallback: config?.fallback,
  };
}

/** Hands the task to a person with a note that answers who, what, why, when, where and what next. */
export async function startEscalation(
  fx: AgentEffects,
  input: { note: EscalationNote; reason: "agent" | "cap" | "limit" },
) {
  const { task, agent, deps } = fx;
  // A lane that names nobody is the channel's work: in a direct message's task, the card's channel.
  const place = escalationPlace(deps.agents.file, task, input.note.lane);
  const lane = laneOwner(deps, input.note.lane, place.channel);
  const { owner } = lane;
  const { id } = await escalationsDb.insertEscalation(fx.tx, {
    taskId: task.id,
    stepNo: fx.stepNo,
    fromAgent: agent.id,
    note: input.note,
    owner,
    fallback: lane.fallback && {
      users: [...lane.fallback.users],
      groups: [...lane.fallback.groups],
    },
    respondInMs: lane.respondWithinMs,
  });
  await handToOwner(fx, owner, input.note);
  postEscalation(fx, { id, place, lane, note: input.note });
  fx.audits.push({
    taskId: task.id,
    actor: { kind: "agent", id: agent.id },
    kind: "escalated",
    data: { escalation_id: id, owner, note: input.note, reason: input.reason },
  });
  fx.afterCommit.push(() => deps.metrics.escalations.inc({ reason: input.reason }));
}

/** The task is the owner's now, with a handoff to them in its history. */
async function handToOwner(fx: AgentEffects, owner: Owner, note: EscalationNote): Promise<void> {
  await insertHandoff(fx.tx, {
    taskId: fx.task.id,
    stepNo: fx.stepNo,
    kind: "escalation",
    from: { kind: "agent", id: fx.agent.id },
    to: { kind: "human", id: owner.id },
    note,
  });
  Object.assign(fx.changes, {
    owner: { kind: "human", id: owner.id },
    status: "waiting_human",
    urgency: note.urgency,
    // As a transfer's: the agent a person sends the work to reads them in its facts.
    facts: { ...fx.task.facts, ...note.facts },
  });
}

type Escalation = {
  id: string;
  place: { channel: string; threadTs?: string };
  lane: ReturnType<typeof laneOwner>;
  note: EscalationNote;
};

/** Its card, where its owner decides; a word to the owner, and to a requester who cannot see it. */
function postEscalation(fx: AgentEffects, e: Escalation): void {
  const { task, agent, deps } = fx;
  const { owner, noticeChannel } = e.lane;
  fx.outbox.push(post(task, escalationCard(fx, e), { table: "escalations", id: e.id }));
  const elsewhere = e.place.channel !== task.channel_id;
  if (owner.kind !== "channel" || owner.id !== e.place.channel) {
    const link = elsewhere
      ? `asked in a direct message with Baton; its card is in ${deps.chat.channelLink(e.place.channel)}`
      : deps.chat.threadLink(task.channel_id, task.thread_ts);
    const where = { ...e.place, noticeChannel };
    fx.outbox.push(post(task, ownerNotice(owner, where, link, agent.name, e.note.summary)));
  }
  // Asked in a direct message, the card went where people can take it: the requester is told here.
  if (elsewhere)
    fx.outbox.push(
      post(task, {
        kind: "notice",
        channel: task.channel_id,
        threadTs: task.thread_ts,
        text: "⏳ This needs a person: I have passed it on, and they will get back to you.",
      }),
    );
}

function escalationCard(fx: AgentEffects, e: Escalation): ChatIntent {
  return {
    kind: "escalation_card",
    ...e.place,
    persona: personaOf(fx.agent),
    escalation: {
      escalationId: e.id,
      fromName: fx.agent.name,
      owner: e.lane.owner,
      note: e.note,
      requesterId: fx.task.requester_id,
      state: { status: "open" },
    },
  };
}

/**
 * The owner hears of it where they are: in the lane's channel when it names one, else a DM for a
 * person, a mention in the thread for groups and several people; a channel-owned lane in its channel.
 */
function ownerNotice(
  owner: Owner,
  where: { channel: string; threadTs?: string; noticeChannel: string | undefined },
  link: string,
  fromName: string,
  summary: string,
) {
  const text = `${fromName} needs a person on this (${link}): ${summary}`;
  if (owner.kind === "channel") return { kind: "notice" as const, channel: owner.id, text };
  // Slack pings only the mentions a notice starts with (the rest is escaped).
  const pinged = `${owner.id.split(",").map(mentionOf).join(" ")} ${text}`;
  if (where.noticeChannel)
    return { kind: "notice" as const, channel: where.noticeChannel, text: pinged };
  if (owner.kind === "user") return { kind: "direct_message" as const, user: owner.id, text };
  return {
    kind: "notice" as const,
    channel: where.channel,
    ...(where.threadTs && { threadTs: where.threadTs }),
    text: pinged,
  };
}

/** A note's `done` (10 items of 300 characters at most): the task's writes that ran. */
export async function doneItems(db: Executor, taskId: string): Promise<string[]> {
  const items = (await writesDone(db, taskId)).map((w) =>
    shorten(maskSecrets(`${w.tool} ran: ${argsText(w.args)}`), 300),
  );
  if (items.length <= 10) return items;
  return [...items.slice(0, 9), `and ${items.length - 9} more writes: see the task's history`];
}
