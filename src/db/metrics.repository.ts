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

/** An agent's model spend since `since`: an index-only range scan of model_calls_agent_day_idx. */
export async function agentSpendSince(db: Executor, agentId: string, since: Date): Promise<number> {
  const row = await db
    .selectFrom("model_calls")
    .select(sql<string>`coalesce(sum(cost_usd), 0)`.as("spent"))
    .where("agent_id", "=", agentId)
    .where("created_at", ">=", since)
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

/**
 * The handoffs to `agentId` since its last model call on the task: what its turn now committing is
 * the first to act on. Read in the statement that inserts the turn's own model call, whose snapshot
 * does not see that row. Handoffs and model calls are stamped with their transaction's start, and a
 * handoff to an agent commits before that agent's next turn begins, so `>` separates them.
 */
export function arrivalsQuery(db: Executor, taskId: string, agentId: string) {
  return db
    .selectFrom("handoffs as h")
    .leftJoin("approvals as a", (join) =>
      join
        .on("h.kind", "=", "approval_decision")
        // Only approval_decision notes carry approval_id (a uuid Baton wrote); others give null.
        .on("a.id", "=", sql<string>`(h.note ->> 'approval_id')::uuid`),
    )
    .select(["h.kind", "a.status as decision"])
    .select([
      sql<number>`extract(epoch from clock_timestamp() - h.created_at)::float8`.as("waited"),
      sql<number | null>`extract(epoch from a.decided_at - a.created_at)::float8`.as("decided"),
    ])
    .where("h.task_id", "=", taskId)
    .where("h.to_kind", "=", "agent")
    .where("h.to_id", "=", agentId)
    .where("h.created_at", ">", (eb) =>
      eb
        .selectFrom("model_calls")
        .select(sql<Date>`coalesce(max(created_at), '-infinity')`.as("last"))
        .where("task_id", "=", taskId)
        .where("agent_id", "=", agentId),
    )
    .orderBy("h.id");
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
