import type { TaskRow } from "./schema.ts";
import type { TurnRecords } from "./turn-records.repository.ts";

/**
 * The task row a turn's statement returns when it writes, worked out without waiting for it, so the
 * next turn can start while the statement travels. It is WRITE_TURN's SET clause
 * (turn-statement.ts) in JavaScript: change the two together. The statement checks the
 * step, owner and stint it was given, so a wrong guess writes nothing. cost_usd is summed in
 * floating point here; the row the statement returns has the exact sum.
 */
export function taskAfterTurn(task: TaskRow, records: TurnRecords, now: Date): TaskRow {
  const { changes: c, lease } = records;
  const closing = c.status === "done" || c.status === "failed";
  return {
    ...task,
    last_activity_at: now,
    status: c.status ?? task.status,
    closed_at: c.status === undefined ? task.closed_at : closing ? now : null,
    owner_kind: c.owner?.kind ?? task.owner_kind,
    owner_id: c.owner?.id ?? task.owner_id,
    step_no: c.stepNo ?? task.step_no,
    stint_no: task.stint_no + (c.newStint ? 1 : 0),
    hop_count: task.hop_count + (c.hop ? 1 : 0),
    handback_stack: c.handbackStack ?? task.handback_stack,
    facts: c.facts ? inJsonbOrder(c.facts) : task.facts,
    tokens: task.tokens + (c.addTokens ?? 0),
    cost_usd: String(Number(task.cost_usd) + (c.addCostUsd ?? 0)),
    failure_reason: c.failureReason !== undefined ? c.failureReason : task.failure_reason,
    model_errors: c.modelErrors ?? task.model_errors,
    urgency: c.urgency ?? task.urgency,
    lease_owner: lease.worker,
    lease_until: new Date(now.getTime() + lease.ms),
    lease_finished: (c.status ?? "active") !== "active" || (c.owner?.kind ?? "agent") !== "agent",
  };
}

/** jsonb keeps an object's keys shorter first, then in byte order: the prompt reads them the same either way. */
function inJsonbOrder<T>(value: T): T {
  if (Array.isArray(value)) return value.map(inJsonbOrder) as T;
  if (value === null || typeof value !== "object") return value;
  const order = (a: string, b: string) =>
    a.length - b.length || Buffer.compare(Buffer.from(a), Buffer.from(b));
  return Object.fromEntries(
    Object.entries(value)
      .sort(([a], [b]) => order(a, b))
      .map(([key, v]) => [key, inJsonbOrder(v)]),
  ) as T;
}
