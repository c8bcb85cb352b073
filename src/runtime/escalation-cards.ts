// What a decision on an escalation shows: its card, updated in place, and a word to the requester
// when the card is posted where they do not see it.
import type { EscalationNote } from "../core/handoffs/note.ts";
import type { ChatIntent } from "../core/ports.ts";
import type { Executor } from "../db/database.ts";
import * as escalationsDb from "../db/escalations.repository.ts";
import type { OutboxMessage } from "../db/outbox.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import { mentionOf } from "./approval-deadline.ts";
import { escalationPlace } from "./decision-place.ts";
import type { RuntimeDeps } from "./deps.ts";
import type { EscalationChoice } from "./escalation-decisions.ts";
import type { Owner } from "./escalations.ts";
import { cardUpdate, personaOf, post } from "./messages.ts";

export type EscalationRow = NonNullable<Awaited<ReturnType<typeof escalationsDb.findEscalation>>>;

/**
 * A card posted outside the task's thread (a task asked in a direct message) is not seen by its
 * requester: they are told in their thread who took the work, or that it went back to an agent.
 */
export function requesterNotice(
  deps: RuntimeDeps,
  task: TaskRow,
  row: EscalationRow,
  userId: string,
  choice: EscalationChoice,
): OutboxMessage[] {
  const note = row.note as unknown as EscalationNote;
  if (escalationPlace(deps.agents.file, task, note.lane).channel === task.channel_id) return [];
  const text =
    choice.kind === "take_over"
      ? `${mentionOf(userId)} took this over and will get back to you.`
      : `${deps.agents.require(choice.agentId).name} is on it ${choice.agentId === row.from_agent ? "again" : "now"}.`;
  return [post(task, { kind: "notice", channel: task.channel_id, threadTs: task.thread_ts, text })];
}

type EscalationCardState = Extract<ChatIntent, { kind: "escalation_card" }>["escalation"]["state"];

/** The escalation card of `row`, updated in place to show `state`. */
export function escalationCardUpdate(
  deps: RuntimeDeps,
  task: TaskRow,
  row: EscalationRow,
  state: EscalationCardState,
): OutboxMessage {
  const from = deps.agents.persona(row.from_agent);
  const note = row.note as unknown as EscalationNote;
  return cardUpdate(
    task,
    {
      kind: "escalation_card",
      ...escalationPlace(deps.agents.file, task, note.lane),
      persona: personaOf(from),
      // No ts here: the delivery reads the card's ts then, so a fallback's card posted since
      // (the sweep's, still in the outbox ahead of this row) is the one updated.
      escalation: {
        escalationId: row.id,
        fromName: from.name,
        owner: row.owner as Owner,
        note,
        requesterId: task.requester_id,
        state,
      },
    },
    { table: "escalations", id: row.id },
  );
}

/**
 * The card of the escalation a person took over on this task, shown closed (`/baton done`) or open
 * again (a reply reopened it); undefined when nobody took one over.
 */
export async function takenOverCard(
  deps: RuntimeDeps,
  tx: Executor,
  task: TaskRow,
  closed?: { by: string; at: string },
): Promise<OutboxMessage | undefined> {
  const row = await escalationsDb.takenOverEscalation(tx, task.id);
  if (!row?.decided_by || !row.decided_at) return undefined;
  const held = {
    status: "taken_over" as const,
    by: row.decided_by,
    at: row.decided_at.toISOString(),
  };
  return escalationCardUpdate(deps, task, row, closed ? { ...held, closed } : held);
}
