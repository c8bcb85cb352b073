import { sql } from "kysely";
import { type Executor, statement } from "./database.ts";

/** What became of an outbox row's delivery: sent (with its message's ts), failed, or told to wait. */

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

/**
 * Records that Slack asked to wait (a 429): the row may go again `inMs` from now. Not a failed try
 * (Slack stored nothing), so its count is kept, and with it whether it is looked for before it goes.
 */
export async function markRateLimited(
  db: Executor,
  id: string,
  error: string,
  inMs: number,
): Promise<void> {
  await db
    .updateTable("slack_outbox")
    .set({
      status: "retry",
      error,
      next_attempt_at: sql<Date>`clock_timestamp() + ${`${Math.round(inMs)} milliseconds`}::interval`,
    })
    .where("id", "=", id)
    .execute();
}
