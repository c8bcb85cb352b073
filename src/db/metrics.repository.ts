import { sql } from "kysely";
import type { Executor } from "./database.ts";

/** Queries behind the operator's numbers (/metrics) and the per-day cost cap. */

export interface PendingApprovalStats {
  waiting: number;
  /** 0 when nothing waits. */
  oldestAgeSeconds: number;
}

/** Read at every scrape: a count over the partial index approvals_pending_created_idx. */
export async function pendingApprovalStats(db: Executor): Promise<PendingApprovalStats> {
  const row = await db
    .selectFrom("approvals")
    .select([
      sql<number>`count(*)::int`.as("waiting"),
      sql<number>`coalesce(extract(epoch from now() - min(created_at)), 0)::float8`.as("oldest"),
    ])
    .where("status", "=", "pending")
    .executeTakeFirstOrThrow();
  return { waiting: row.waiting, oldestAgeSeconds: Math.max(0, row.oldest) };
}

/**
 * An agent's model spend since 00:00 UTC: an index-only range scan of model_calls_agent_day_idx.
 * The day is the database's, whose clock stamped the calls: a replica whose own clock is off would
 * count yesterday's spend in, or today's out, around midnight.
 */
export async function agentSpendToday(db: Executor, agentId: string): Promise<number> {
  const row = await db
    .selectFrom("model_calls")
    .select(sql<string>`coalesce(sum(cost_usd), 0)`.as("spent"))
    .where("agent_id", "=", agentId)
    .where(
      "created_at",
      ">=",
      sql<Date>`date_trunc('day', now() at time zone 'UTC') at time zone 'UTC'`,
    )
    .executeTakeFirstOrThrow();
  return Number(row.spent);
}

export interface Arrival {
  kind: string;
  /** From the handoff to now, on the database's clock. */
  waitedSeconds: number;
  /** For an approval decision: its status and decided_at - created_at. */
  approval: { decision: string; waitedSeconds: number } | undefined;
}

export function toArrival(r: {
  kind: string;
  decision: string | null;
  waited: number;
  decided: number | null;
}): Arrival {
  return {
    kind: r.kind,
    waitedSeconds: Math.max(0, r.waited),
    approval:
      r.decision !== null && r.decided !== null
        ? { decision: r.decision, waitedSeconds: Math.max(0, r.decided) }
        : undefined,
  };
}
