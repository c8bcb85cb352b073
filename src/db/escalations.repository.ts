import { type NotNull, sql } from "kysely";
import type { Executor, Tx } from "./database.ts";

/**
 * Escalations: work handed to a person is a row, taken over or sent back once. Its respond-by time
 * is set and judged by the database's clock, as an approval's deadline is (approvals.repository.ts).
 */

export async function insertEscalation(
  tx: Executor,
  e: {
    taskId: string;
    stepNo: number;
    fromAgent: string;
    note: Record<string, unknown>;
    owner: { kind: string; id: string };
    fallback: { users: string[]; groups: string[] } | undefined;
    /** From now, by the database's clock. */
    respondInMs: number;
  },
) {
  return tx
    .insertInto("escalations")
    .values({
      task_id: e.taskId,
      step_no: e.stepNo,
      from_agent: e.fromAgent,
      note: JSON.stringify(e.note),
      owner: JSON.stringify(e.owner),
      fallback: e.fallback ? JSON.stringify(e.fallback) : null,
      respond_by: sql<Date>`now() + ${e.respondInMs}::float8 * interval '1 millisecond'`,
    })
    .returning(["id"])
    .executeTakeFirstOrThrow();
}

/** Whether the task waits on an escalation card nobody has taken over or sent back yet. */
export async function hasOpenEscalation(db: Executor, taskId: string): Promise<boolean> {
  const row = await db
    .selectFrom("escalations")
    .select("id")
    .where("task_id", "=", taskId)
    .where("status", "=", "open")
    .executeTakeFirst();
  return row !== undefined;
}

export async function findEscalation(db: Executor, id: string) {
  return db.selectFrom("escalations").selectAll().where("id", "=", id).executeTakeFirst();
}

/**
 * Decides an escalation once, stamped by the database's clock: its card shows the time returned,
 * so every replica shows the same one.
 */
export async function decideEscalation(
  tx: Tx,
  id: string,
  decision: {
    status: "taken_over" | "sent_back";
    by: string;
    decision: Record<string, unknown>;
    /**
     * What the click was authorized against: open under this owner (a sweep may have moved it to
     * its fallback since), or taken over by this person (who now hands the work on).
     */
    checked:
      | { status: "open"; owner: { kind: string; id: string } }
      | { status: "taken_over"; by: string };
  },
) {
  const { checked } = decision;
  return tx
    .updateTable("escalations")
    .set({
      status: decision.status,
      decided_by: decision.by,
      decided_at: sql<Date>`now()`,
      decision: JSON.stringify(decision.decision),
    })
    .where("id", "=", id)
    .where("status", "=", checked.status)
    .$call((q) =>
      checked.status === "open"
        ? q.where(
            "owner",
            "=",
            sql<{ kind: string; id: string }>`${JSON.stringify(checked.owner)}::jsonb`,
          )
        : q.where("decided_by", "=", checked.by),
    )
    .returningAll()
    .$narrowType<{ decided_at: NotNull }>()
    .executeTakeFirst();
}

/** The escalation of a task that a person took over, if its work is still theirs to close. */
export async function takenOverEscalation(db: Executor, taskId: string) {
  return db
    .selectFrom("escalations")
    .selectAll()
    .where("task_id", "=", taskId)
    .where("status", "=", "taken_over")
    .orderBy("decided_at", "desc")
    .limit(1)
    .executeTakeFirst();
}

/** Open escalations past their respond-by time that have not been moved on yet. */
export async function escalationsPastDeadline(db: Executor, limit: number) {
  return db
    .selectFrom("escalations")
    .selectAll()
    .where("status", "=", "open")
    .where("respond_by", "<", sql<Date>`now()`)
    .where("escalated_at", "is", null)
    .orderBy("respond_by")
    .limit(limit)
    .execute();
}

/**
 * Moves an open escalation to its fallback owner once; returns nothing if it moved meanwhile. It
 * is due again as long after as it first was (a minute at least).
 */
export async function reassignEscalation(tx: Tx, id: string, owner: { kind: string; id: string }) {
  return tx
    .updateTable("escalations")
    .set({
      owner: JSON.stringify(owner),
      escalated_at: sql<Date>`now()`,
      // The old row's values: the first window, from the escalation to its respond-by time.
      respond_by: sql<Date>`now() + greatest(respond_by - created_at, interval '1 minute')`,
    })
    .where("id", "=", id)
    .where("status", "=", "open")
    .where("escalated_at", "is", null)
    .returningAll()
    .executeTakeFirst();
}

/**
 * The card of the task's escalation people hold or decide on now (open, or taken over), where it is
 * in Slack: undefined when none is, or its card is not in Slack yet. `person`: who took it over, or
 * the one person an open one was given to; `owner`: whom it was given to (a person, a user group,
 * several, a channel); `summary`: its note's.
 */
export async function liveEscalationCard(db: Executor, taskId: string) {
  const row = await db
    .selectFrom("escalations")
    .select([
      "status",
      "decided_by",
      "owner",
      "card_channel",
      "card_ts",
      sql<string>`note->>'summary'`.as("summary"),
    ])
    .where("task_id", "=", taskId)
    .where("status", "in", ["open", "taken_over"])
    .orderBy("created_at", "desc")
    .limit(1)
    .executeTakeFirst();
  return row?.card_channel && row.card_ts
    ? {
        channel: row.card_channel,
        ts: row.card_ts,
        takenOver: row.status === "taken_over",
        owner: row.owner,
        summary: row.summary,
        person:
          row.status === "taken_over"
            ? (row.decided_by ?? undefined)
            : row.owner.kind === "user"
              ? row.owner.id
              : undefined,
      }
    : undefined;
}
