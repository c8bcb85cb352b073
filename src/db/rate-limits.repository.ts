import { sql } from "kysely";
import type { Tx } from "./database.ts";

/**
 * Holds one rate limit until the transaction ends, on every replica: the count and the write it
 * allows are one step, so two tasks at the limit cannot both pass it.
 */
export async function lockRateLimit(tx: Tx, key: string): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtextextended(${`baton:rate:${key}`}, 0))`.execute(tx);
}

/** The database's clock, as the rows' `created_at` are: replicas' clocks may differ. */
const windowStart = (windowMs: number) => sql<Date>`now() - ${windowMs} * interval '1 millisecond'`;

/** A tool's calls that ran, or wait on a person's approval, in the last `windowMs`. */
export async function toolRunsWithin(tx: Tx, tool: string, windowMs: number): Promise<number> {
  const row = await tx
    .selectFrom("tool_calls")
    .select((eb) => eb.fn.countAll<string>().as("n"))
    .where("tool", "=", tool)
    .where("status", "in", ["done", "pending_approval"])
    .where("created_at", ">", windowStart(windowMs))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Tasks `requesterId` started in the last `windowMs`. */
export async function tasksStartedWithin(
  tx: Tx,
  requesterId: string,
  windowMs: number,
): Promise<number> {
  const row = await tx
    .selectFrom("tasks")
    .select((eb) => eb.fn.countAll<string>().as("n"))
    .where("requester_id", "=", requesterId)
    .where("created_at", ">", windowStart(windowMs))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}
