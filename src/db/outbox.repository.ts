import { sql } from "kysely";
import type { ChatIntent } from "../core/ports.ts";
import { type Executor, statement, type Tx } from "./database.ts";

/** A Slack write decided inside a transaction, delivered after it commits. */
export interface OutboxMessage {
  taskId: string | null;
  intent: ChatIntent;
  /** After delivery, remember the message ts on this row (to update the card later). */
  cardOf?: CardRef;
  /**
   * A card update whose card's ts was not saved when it was decided (a click can come before
   * Slack's answer to the post): the ts this row remembers is read when the update is delivered.
   */
  updateOf?: CardRef;
}

export type CardRef = { table: "approvals" | "escalations"; id: string };

function outboxRows(messages: readonly OutboxMessage[]) {
  return messages.map((m) => ({
    task_id: m.taskId,
    method: m.intent.kind,
    payload: JSON.stringify({
      intent: m.intent,
      cardOf: m.cardOf ?? null,
      ...(m.updateOf && { updateOf: m.updateOf }),
    }),
  }));
}

export async function enqueueOutbox(tx: Tx, messages: readonly OutboxMessage[]): Promise<void> {
  if (messages.length === 0) return;
  await tx.insertInto("slack_outbox").values(outboxRows(messages)).execute();
}

/**
 * Written out, not as parameters: the planner can then use slack_outbox_pending_idx (rows not yet
 * sent) in a prepared statement's generic plan too, instead of reading every row ever posted.
 */
const UNDELIVERED = sql<boolean>`status <> 'sent' and status <> 'dead'`;

/**
 * Rows that may be tried now: not backing off after a failure, and with no earlier row of their
 * task backing off (a thread's messages go out in order, so the later ones wait behind it).
 */
const DUE = sql<boolean>`(next_attempt_at is null or next_attempt_at <= now())
  and not exists (select from slack_outbox earlier
    where earlier.task_id = slack_outbox.task_id and earlier.id < slack_outbox.id
      and earlier.status <> 'sent' and earlier.status <> 'dead'
      and earlier.next_attempt_at > now())`;

/**
 * Locks the undelivered rows of a task (or, with no task, the oldest of any task) in order, those
 * due: a row backing off after a failure holds back the later rows of its task, not other tasks'.
 * `skip locked` lets another deliverer take other rows without waiting. Only the worker holding a
 * task's lease (`holdsLease`) takes a leased task's rows: it posts them without locking them, so
 * anyone else could send a row it is posting, or a card update before it has saved the card's ts.
 */
export async function lockUndelivered(
  tx: Tx,
  filter: { taskId?: string; olderThanMs?: number; holdsLease?: boolean; limit: number },
) {
  let query = tx
    .selectFrom("slack_outbox")
    .select(["id", "task_id", "method", "payload", "attempts", "status", "created_at"])
    .where(UNDELIVERED)
    .where(DUE)
    .orderBy("id")
    .limit(filter.limit)
    .forUpdate()
    .skipLocked();
  if (filter.taskId) query = query.where("task_id", "=", filter.taskId);
  if (!filter.holdsLease)
    query = query.where((eb) =>
      eb.or([
        eb("task_id", "is", null),
        eb.not(
          eb.exists(
            eb
              .selectFrom("tasks")
              .select("tasks.id")
              .whereRef("tasks.id", "=", "slack_outbox.task_id")
              .where("tasks.lease_until", ">", sql<Date>`now()`),
          ),
        ),
      ]),
    );
  if (filter.olderThanMs !== undefined) {
    query = query.where(
      "created_at",
      "<",
      sql<Date>`now() - ${`${filter.olderThanMs} milliseconds`}::interval`,
    );
  }
  return query.execute();
}

export interface Delivered {
  id: string;
  slackTs: string | null;
}

/**
 * Marks delivered rows sent: `ids` and `slackTs` name the parameters holding their ids and message
 * ts (see `deliveredValues`). The rows are found through the primary key: joined to the outbox,
 * the arrays were planned as a hundred rows, and a prepared statement then read the whole table.
 */
export function markDeliveredSql(ids: string, slackTs: string): string {
  return `
  update slack_outbox
  set status = 'sent', slack_ts = (${slackTs}::text[])[array_position(${ids}::bigint[], slack_outbox.id)],
    sent_at = now()
  where slack_outbox.id = any(${ids}::bigint[])`;
}

export type DeliveredValues = [ids: string[], slackTs: (string | null)[]];

export function deliveredValues(rows: readonly Delivered[]): DeliveredValues {
  return [rows.map((r) => r.id), rows.map((r) => r.slackTs)];
}

const markDeliveredStatement = statement<DeliveredValues, never>(markDeliveredSql("$1", "$2"));

/** Marks delivered rows sent (a turn marks the rows delivered before it inside its own statement). */
export async function markDelivered(db: Executor, rows: readonly Delivered[]): Promise<void> {
  if (rows.length > 0) await markDeliveredStatement.rows(db, ...deliveredValues(rows));
}

/**
 * Records a failed delivery: the row may be tried again `retry.inMs` from now, or, `"dead"`, never
 * (Slack refused it for a reason that retrying will not fix).
 */
export async function markFailed(
  db: Executor,
  id: string,
  error: string,
  retry: { inMs: number } | "dead",
): Promise<void> {
  // From the failure, not from the start of a transaction that may have sent many rows before it.
  const nextAttemptAt =
    retry === "dead"
      ? null
      : sql<Date>`clock_timestamp() + ${`${Math.round(retry.inMs)} milliseconds`}::interval`;
  await db
    .updateTable("slack_outbox")
    .set((eb) => ({
      status: retry === "dead" ? "dead" : "retry",
      error,
      attempts: eb("attempts", "+", 1),
      next_attempt_at: nextAttemptAt,
    }))
    .where("id", "=", id)
    .execute();
}

export async function rememberCard(
  db: Executor,
  cardOf: CardRef,
  channel: string,
  ts: string,
): Promise<void> {
  await db
    .updateTable(cardOf.table)
    .set({ card_channel: channel, card_ts: ts })
    .where("id", "=", cardOf.id)
    .execute();
}

/** The ts of a card's message, once its delivery has saved it. */
export async function cardTs(db: Executor, card: CardRef): Promise<string | null> {
  const row = await db
    .selectFrom(card.table)
    .select("card_ts")
    .where("id", "=", card.id)
    .executeTakeFirst();
  return row?.card_ts ?? null;
}

/** Whether the post of a card is still in the outbox, before `beforeId` (someone may be sending it). */
export async function cardPostUndelivered(
  db: Executor,
  taskId: string,
  beforeId: string,
  card: CardRef,
): Promise<boolean> {
  const row = await db
    .selectFrom("slack_outbox")
    .select("id")
    .where("task_id", "=", taskId)
    .where("id", "<", beforeId)
    .where(UNDELIVERED)
    .where(sql<string>`payload->'cardOf'->>'id'`, "=", card.id)
    .executeTakeFirst();
  return row !== undefined;
}
