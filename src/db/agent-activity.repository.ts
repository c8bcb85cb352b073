import { sql } from "kysely";
import type { Executor } from "./database.ts";

/** What one agent did in a window: the evidence for moving it to the next autonomy phase. */
export interface AgentActivity {
  agentId: string;
  /**
   * Its model calls. Not its tasks: counting distinct tasks reads every call of the window from
   * the table (2.4 s for a million, scripts/bench-reports.ts), where this reads the index alone.
   */
  modelCalls: number;
  costUsd: number;
  /** Its write and irreversible calls, by outcome. */
  writes: {
    /** Ran by the agent's own autonomy. */
    ran: number;
    /**
     * A person approved them; they ran, or the tool refused (`approvedFailed` of them), or the
     * agents file changed while they waited and no longer let them run (`approvedNotRun`).
     */
    approved: number;
    approvedFailed: number;
    approvedNotRun: number;
    rejected: number;
    expired: number;
    waiting: number;
    /** Asked of a person, and taken back when the task stopped before anyone decided. */
    withdrawn: number;
    /** Asked of a person, and cancelled when the agents file stopped letting them run first. */
    cancelled: number;
    /** Shown as proposals (shadow mode), never run. */
    proposed: number;
    /** Refused by the tool itself, or by a rate limit. */
    failed: number;
  };
  escalations: number;
}

/**
 * The activity of `agentIds` in the last `windowMs`: three aggregates, each over an index by agent
 * and time (model_calls_agent_day_idx, and migration 0011's two), joined by agent.
 */
export async function agentActivity(
  db: Executor,
  agentIds: readonly string[],
  windowMs: number,
): Promise<AgentActivity[]> {
  const since = sql<Date>`now() - ${windowMs} * interval '1 millisecond'`;
  const agents = sql`any(${[...agentIds]}::text[])`;
  const { rows } = await sql<Record<string, string>>`
    with calls as (
      select agent_id, count(*) as model_calls, sum(cost_usd) as cost_usd
      from model_calls where agent_id = ${agents} and created_at > ${since}
      group by agent_id
    ), writes as (
      select agent_id,
        count(*) filter (where status = 'done' and coalesce(allowed_by, '') not like 'approval:%') as ran,
        count(*) filter (where status in ('done', 'failed', 'not_run') and allowed_by like 'approval:%') as approved,
        count(*) filter (where status = 'failed' and allowed_by like 'approval:%') as approved_failed,
        count(*) filter (where status = 'not_run' and allowed_by like 'approval:%') as approved_not_run,
        count(*) filter (where status = 'rejected') as rejected,
        count(*) filter (where status = 'expired') as expired,
        count(*) filter (where status = 'pending_approval') as waiting,
        count(*) filter (where status = 'withdrawn') as withdrawn,
        count(*) filter (where status = 'not_run'
          and coalesce(allowed_by, '') not like 'approval:%') as cancelled,
        count(*) filter (where status = 'shadowed') as proposed,
        count(*) filter (where status in ('failed', 'rate_limited')
          and coalesce(allowed_by, '') not like 'approval:%') as failed
      from tool_calls
      where tool_class <> 'read' and agent_id = ${agents} and created_at > ${since}
      group by agent_id
    ), escalations as (
      select from_id as agent_id, count(*) as escalations
      from handoffs
      where kind = 'escalation' and from_id = ${agents} and created_at > ${since}
      group by from_id
    )
    select * from calls full join writes using (agent_id) full join escalations using (agent_id)
  `.execute(db);
  const n = (value: string | undefined) => Number(value ?? 0);
  return rows.map((r) => ({
    agentId: r.agent_id ?? "",
    modelCalls: n(r.model_calls),
    costUsd: n(r.cost_usd),
    writes: {
      ran: n(r.ran),
      approved: n(r.approved),
      approvedFailed: n(r.approved_failed),
      approvedNotRun: n(r.approved_not_run),
      rejected: n(r.rejected),
      expired: n(r.expired),
      waiting: n(r.waiting),
      withdrawn: n(r.withdrawn),
      cancelled: n(r.cancelled),
      proposed: n(r.proposed),
      failed: n(r.failed),
    },
    escalations: n(r.escalations),
  }));
}
