import type { People } from "../config/agents-schema.ts";
import type { EscalationNote } from "../core/handoffs/note.ts";
import type { ChatIntent } from "../core/ports.ts";
import * as approvalsDb from "../db/approvals.repository.ts";
import type { Tx } from "../db/database.ts";
import * as escalationsDb from "../db/escalations.repository.ts";
import { audit, insertHandoff } from "../db/ledger.repository.ts";
import { enqueueOutbox, type OutboxMessage } from "../db/outbox.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import { lockTask, updateTask } from "../db/tasks.repository.ts";
import { enforceApprovalDeadline, mentionOf } from "./approval-deadline.ts";
import { escalationPlace } from "./decision-place.ts";
import type { RuntimeDeps } from "./deps.ts";
import { laneNow } from "./escalation-owners.ts";
import { peopleOwner } from "./escalations.ts";
import { cardUpdate, personaOf, post } from "./messages.ts";
import { deliverOutbox } from "./outbox.ts";

/**
 * Work waiting on a person past its deadline goes to its fallback owner, with a reminder where its
 * owners decide and a line in the history. Without a fallback, an approval expires (the agent is
 * told). Each move is a conditional update, so replicas running this at once move it once.
 * What is due is judged by the database's clock, which every replica shares, not this one's.
 */
export async function enforceDeadlines(deps: RuntimeDeps): Promise<void> {
  // The list can be stale by the time its turn comes (another replica escalated it, say):
  // each approval is judged again on its own row.
  for (const due of await approvalsDb.pendingPastDeadline(deps.db, 100))
    await enforceApprovalDeadline(deps, due.id);
  for (const escalation of await escalationsDb.escalationsPastDeadline(deps.db, 100)) {
    await moveEscalation(deps, escalation);
  }
}

type DueEscalation = Awaited<ReturnType<typeof escalationsDb.escalationsPastDeadline>>[number];
type MovedEscalation = NonNullable<Awaited<ReturnType<typeof escalationsDb.reassignEscalation>>>;
type Owner = { kind: string; id: string };

async function moveEscalation(deps: RuntimeDeps, escalation: DueEscalation): Promise<void> {
  const fallback = fallbackNow(deps, escalation);
  // All of the fallback's people, as approvals give it to all of them: any of them may take it.
  const owner = (fallback && peopleOwner(fallback)) ?? escalation.owner;
  await deps.db.transaction().execute(async (tx) => {
    const row = await escalationsDb.reassignEscalation(tx, escalation.id, owner);
    if (!row) return;
    const task = await lockTask(tx, row.task_id);
    if (!task) return;
    const note = row.note as unknown as EscalationNote;
    const place = escalationPlace(deps.agents.file, task, note.lane);
    const messages = fallback
      ? await handToFallback(deps, tx, { task, row, from: escalation, to: owner, place })
      : [];
    const who = fallback ? "it is yours now" : "it is still waiting for you";
    const card = { ts: row.card_ts, summary: note.summary };
    messages.push(
      post(task, reminder(deps, place, card, fallback ? owner : escalation.owner, who)),
    );
    await enqueueOutbox(tx, messages);
    await audit(tx, {
      taskId: task.id,
      actor: { kind: "system", id: "baton" },
      kind: fallback ? "escalation_reassigned" : "escalation_reminded",
      data: { escalation_id: row.id, to: owner },
    });
  });
  await deliverOutbox(deps, { taskId: escalation.task_id });
}

/**
 * The fallback of the escalation's lane in the agents file in use: a person taken out of it since
 * the card was posted (offboarded) is not given work they may not decide (see `stillNamed`). The
 * one stored with the escalation when the file leaves the lane out.
 */
function fallbackNow(deps: RuntimeDeps, escalation: DueEscalation): People | null {
  const lane = laneNow(deps, escalation);
  return lane ? (lane.fallback ?? null) : escalation.fallback;
}

/**
 * The escalation goes to its fallback: the history's reassignment, the task's owner if the first
 * owner held it, the old card marked reassigned and a new one for the fallback. Its cards, to send.
 */
async function handToFallback(
  deps: RuntimeDeps,
  tx: Tx,
  moved: {
    task: TaskRow;
    row: MovedEscalation;
    from: DueEscalation;
    to: Owner;
    place: ReturnType<typeof escalationPlace>;
  },
): Promise<OutboxMessage[]> {
  const { task, row, from, to, place } = moved;
  await insertHandoff(tx, {
    taskId: task.id,
    stepNo: task.step_no,
    kind: "reassign",
    from: { kind: "human", id: from.owner.id },
    to: { kind: "human", id: to.id },
    note: { reason: "no answer before the deadline" },
  });
  if (task.owner_kind === "human" && task.owner_id === from.owner.id)
    await updateTask(tx, task.id, { owner: { kind: "human", id: to.id } });
  const agent = deps.agents.persona(row.from_agent);
  const card = { kind: "escalation_card" as const, ...place, persona: personaOf(agent) };
  const escalation = {
    escalationId: row.id,
    fromName: agent.name,
    note: row.note as unknown as EscalationNote,
    requesterId: task.requester_id,
  };
  const at = (row.escalated_at ?? row.respond_by).toISOString();
  const ref = { table: "escalations" as const, id: row.id };
  return [
    cardUpdate(
      task,
      {
        ...card,
        ...(from.card_ts ? { updateTs: from.card_ts } : {}),
        escalation: {
          ...escalation,
          owner: from.owner as never,
          state: { status: "reassigned", to: to.id, at },
        },
      },
      ref,
    ),
    post(
      task,
      { ...card, escalation: { ...escalation, owner: to as never, state: { status: "open" } } },
      ref,
    ),
  ];
}

/**
 * People are paged by mention where the card is (in a direct message's task, not the requester's
 * DM). A channel's members decide in their channel: they are paged there, in the card's thread if
 * the card is in it, else with a link to the card and what it is about.
 */
function reminder(
  deps: RuntimeDeps,
  place: { channel: string; threadTs?: string },
  card: { ts: string | null; summary: string },
  to: { kind: string; id: string },
  who: string,
): Extract<ChatIntent, { kind: "notice" }> {
  const late = `⏰ Reminder: nobody has picked this up in time; ${who}`;
  // Slack pings only the mentions a notice starts with (the rest is escaped): lead with them.
  if (to.kind !== "channel")
    return {
      kind: "notice",
      ...place,
      text: `${to.id.split(",").map(mentionOf).join(" ")} ${late}.`,
    };
  // <!here> pages the members who are around; <!channel> would page the away ones too, each time.
  // In the card's thread, the reply is also sent to the channel: a page buried in a thread that
  // nobody follows would page nobody.
  const thread = place.threadTs ?? card.ts ?? undefined; // a card of its own heads its thread
  if (place.channel === to.id)
    return {
      kind: "notice",
      channel: to.id,
      ...(thread && { threadTs: thread, broadcast: true }),
      text: `<!here> ${late}.`,
    };
  const link = thread
    ? deps.chat.threadLink(place.channel, thread)
    : deps.chat.channelLink(place.channel);
  return { kind: "notice", channel: to.id, text: `<!here> ${late} (${link}): ${card.summary}` };
}
