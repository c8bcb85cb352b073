import { sql } from "kysely";
import type { AskerRole, Askers } from "../core/policy.ts";
import type { Executor } from "./database.ts";

type AskerRow = { approval_id: string; role: AskerRole; user_id: string };

/**
 * Who asked for each approval, and so may not decide it: its task's requester, whoever handed the
 * work on to an agent (a send-back, "@Baton billing: refund it"), and whoever wrote anything else
 * the agent had read by the approval's step (a reply in its thread). In that order, each role in the
 * order it happened.
 */
async function askerRows(db: Executor, approvalIds: readonly string[]): Promise<AskerRow[]> {
  if (approvalIds.length === 0) return [];
  const ids = sql.val([...approvalIds]);
  const { rows } = await sql<AskerRow>`
    select approval_id, role, user_id from (
      select a.id as approval_id, 'requester' as role, a.requester_id as user_id, 0 as rank, 0::bigint as seq
        from approvals a where a.id = any(${ids}::uuid[])
      union all
      select a.id, 'handed_on', h.from_id, 1, h.id from approvals a
        join handoffs h on h.task_id = a.task_id and h.kind = 'human_return'
          and h.from_kind = 'human' and h.step_no <= a.step_no
        where a.id = any(${ids}::uuid[])
      union all
      select a.id, 'thread', i.author_id, 2, i.id from approvals a
        join task_inputs i on i.task_id = a.task_id and i.consumed_at_step <= a.step_no
        where a.id = any(${ids}::uuid[])
    ) askers order by approval_id, rank, seq`.execute(db);
  return rows;
}

/** Everyone who asked for each approval, whatever their part (see `askerRows`). */
export async function askersOf(
  db: Executor,
  approvalIds: readonly string[],
): Promise<Map<string, Set<string>>> {
  const askers = new Map<string, Set<string>>();
  for (const row of await askerRows(db, approvalIds)) {
    const users = askers.get(row.approval_id) ?? new Set<string>();
    users.add(row.user_id);
    askers.set(row.approval_id, users);
  }
  return askers;
}

/**
 * Who asked for one approval, by their part: what its card shows and its clicks are judged on.
 * Someone who wrote in the thread is listed there only if not named for a larger part already.
 */
export async function whoAsked(db: Executor, approvalId: string): Promise<Askers> {
  const rows = await askerRows(db, [approvalId]);
  const requester = rows.find((r) => r.role === "requester")?.user_id ?? "";
  const handedOnBy = [...new Set(rows.filter((r) => r.role === "handed_on").map((r) => r.user_id))];
  const named = new Set([requester, ...handedOnBy]);
  const inThread = [
    ...new Set(
      rows.filter((r) => r.role === "thread" && !named.has(r.user_id)).map((r) => r.user_id),
    ),
  ];
  return { requester, handedOnBy, inThread };
}
