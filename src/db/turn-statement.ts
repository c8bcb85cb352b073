import { CompiledQuery } from "kysely";
import type {
  AuditInput,
  ConversationRecord,
  HandoffRecord,
  ModelCallRecord,
  ToolCallRecord,
} from "./ledger.repository.ts";
import type { toArrival } from "./metrics.repository.ts";
import type { OutboxMessage } from "./outbox.repository.ts";
import { deliveredValues, markDeliveredSql } from "./outbox-marks.repository.ts";
import { lastStatement } from "./pipelined-client.ts";
import type { TaskRow } from "./schema.ts";
import type { TaskChanges } from "./tasks.repository.ts";
import type { TurnRecords } from "./turn-records.repository.ts";

/**
 * Everything a turn writes, in one statement of data-modifying CTEs: its model call, conversation,
 * tool calls, handoffs, audit events and Slack outbox, the task's new state, and the earlier turn's
 * delivered messages. One round trip instead of eight. Nothing but the delivered marks is written
 * unless the task is still at the turn's step, so a turn that wrote nothing before it needs no
 * transaction around it: the statement is atomic on its own.
 *
 * The text never changes: each table's rows travel as one JSON array (an empty one inserts nothing)
 * and a task change left out keeps the column, so the statement is prepared once per connection and
 * nothing is built or compiled per turn (building it with kysely was a tenth of a hop's CPU).
 * The final SELECT reads the snapshot from before the statement, so "since the last model call"
 * and "inputs not yet consumed" do not see this turn's own rows. Arrivals (handoff latency) are the
 * handoffs to the agent since its last model call on the task: handoffs and model calls are stamped
 * with their transaction's start, and a handoff commits before its agent's next turn begins, so `>`
 * separates them.
 */
// Its SET clause has a twin in JavaScript, taskAfterTurn (task-after-turn.ts): change the two together.
const WRITE_TURN = `
with task_row as (
  update tasks set
    last_activity_at = now(),
    status = coalesce($2::text, status),
    closed_at = case when $2::text is null then closed_at when $2::text in ('done', 'failed') then now() end,
    owner_kind = coalesce($3::text, owner_kind),
    owner_id = coalesce($4::text, owner_id),
    step_no = coalesce($5::int, step_no),
    stint_no = stint_no + $6::int,
    hop_count = hop_count + $7::int,
    handback_stack = coalesce($8::jsonb, handback_stack),
    facts = coalesce($9::jsonb, facts),
    tokens = tokens + $10::int,
    cost_usd = cost_usd + $11::numeric,
    failure_reason = case when $12::boolean then $13::text else failure_reason end,
    model_errors = coalesce($14::int, model_errors),
    urgency = coalesce($15::text, urgency),
    lease_owner = $16::text,
    -- From this statement's start, not its transaction's: a write tool may have run since the BEGIN.
    lease_until = statement_timestamp() + $17::int * interval '1 millisecond',
    -- A turn that leaves the task out of the agent's hands ends its run's work (see CLAIM_LEASE).
    lease_finished = coalesce($2::text, 'active') <> 'active' or coalesce($3::text, 'agent') <> 'agent'
  where id = $1::uuid and step_no = $18::int and status = 'active' and owner_kind = 'agent'
    and owner_id = $27::text and stint_no = $28::int
    -- No other run holds the task: one that took it over after this run's lease ran out owns it now,
    -- and the turns this run already sent behind this one must not land on its steps.
    and (lease_owner = $16::text or lease_until is null or lease_until < now())
  returning *
), model_call as (
  insert into model_calls (task_id, step_no, agent_id, model, prompt_tokens, completion_tokens,
    cost_usd, latency_ms, request_chars, outcome, usage_estimated)
  select $1::uuid, r.step_no, r.agent_id, r.model, r.prompt_tokens, r.completion_tokens,
    r.cost_usd, r.latency_ms, r.request_chars, r.outcome, r.usage_estimated
  from json_to_record($19::json) as r(step_no int, agent_id text, model text, prompt_tokens int,
    completion_tokens int, cost_usd numeric, latency_ms int, request_chars int, outcome text,
    usage_estimated boolean)
  where exists (select from task_row)
), conversation_rows as (
  insert into conversation (task_id, stint_no, step_no, message)
  select $1::uuid, r.stint_no, r.step_no, r.message
  from rows from (json_to_recordset($20::json) as (stint_no int, step_no int, message jsonb))
    with ordinality as r(stint_no, step_no, message, n)
  where exists (select from task_row)
  order by r.n
), tool_call_rows as (
  insert into tool_calls (task_id, step_no, agent_id, tool, tool_class, args, idempotency_key,
    status, result, allowed_by)
  select $1::uuid, r.step_no, r.agent_id, r.tool, r.tool_class, coalesce(r.args, 'null'),
    r.idempotency_key, r.status, coalesce(r.result, 'null'), r.allowed_by
  from rows from (json_to_recordset($21::json) as (step_no int, agent_id text, tool text,
      tool_class text, args jsonb, idempotency_key text, status text, result jsonb, allowed_by text))
    with ordinality as r(step_no, agent_id, tool, tool_class, args, idempotency_key, status, result,
      allowed_by, n)
  where exists (select from task_row)
  order by r.n
), handoff_rows as (
  insert into handoffs (task_id, step_no, kind, from_kind, from_id, to_kind, to_id, note)
  select $1::uuid, r.step_no, r.kind, r.from_kind, r.from_id, r.to_kind, r.to_id, r.note
  from rows from (json_to_recordset($22::json) as (step_no int, kind text, from_kind text,
      from_id text, to_kind text, to_id text, note jsonb))
    with ordinality as r(step_no, kind, from_kind, from_id, to_kind, to_id, note, n)
  where exists (select from task_row)
  order by r.n
), audit_rows as (
  insert into audit_events (task_id, actor_kind, actor_id, kind, data)
  select r.task_id, r.actor_kind, r.actor_id, r.kind, r.data
  from rows from (json_to_recordset($23::json) as (task_id uuid, actor_kind text, actor_id text,
      kind text, data jsonb))
    with ordinality as r(task_id, actor_kind, actor_id, kind, data, n)
  where exists (select from task_row)
  order by r.n
), outbox_rows as (
  insert into slack_outbox (task_id, method, payload)
  select r.task_id, r.method, r.payload
  from rows from (json_to_recordset($24::json) as (task_id uuid, method text, payload jsonb))
    with ordinality as r(task_id, method, payload, n)
  where exists (select from task_row)
  order by r.n
  returning id
), delivered_rows as (${markDeliveredSql("$25", "$29")}
)
select task_row.*,
  exists (select 1 from task_inputs
    where task_inputs.task_id = $1::uuid and task_inputs.consumed_at_step is null) as has_new_inputs,
  (select coalesce(json_agg(id order by id), '[]') from outbox_rows) as outbox_ids,
  (select coalesce(json_agg(a order by a.id), '[]') from (
    select h.id, h.kind, ap.status as decision,
      extract(epoch from clock_timestamp() - h.created_at)::float8 as waited,
      extract(epoch from ap.decided_at - ap.created_at)::float8 as decided
    from handoffs h
    -- Only approval_decision notes carry approval_id (a uuid Baton wrote); others give null.
    left join approvals ap on h.kind = 'approval_decision' and ap.id = (h.note ->> 'approval_id')::uuid
    where h.task_id = $1::uuid and h.to_kind = 'agent' and h.to_id = $26::text
      and h.created_at > (select coalesce(max(created_at), '-infinity') from model_calls
        where model_calls.task_id = $1::uuid and model_calls.agent_id = $26::text)
  ) a) as arrivals
from task_row`;

/**
 * The same statement as its transaction's last, sent with the COMMIT: a task that is no longer at
 * the turn's step fails it (SQLSTATE BT001), which rolls back the whole transaction.
 */
const WRITE_TURN_LAST = lastStatement(
  WRITE_TURN.replace(
    /\nfrom task_row$/,
    "\nfrom (select baton_require(exists (select from task_row), 'the task moved on under this turn')) as guard\n  cross join task_row",
  ),
);

/** What the statement answers when the task was still at the turn's step: one row. */
export type WrittenTurnRow = TaskRow & {
  has_new_inputs: boolean;
  outbox_ids: unknown[];
  arrivals: Parameters<typeof toArrival>[0][];
};

/** The turn's statement, `last` in its transaction or not, with its records as parameters. */
export function writeTurnQuery(records: TurnRecords, last = false): CompiledQuery {
  return CompiledQuery.raw(last ? WRITE_TURN_LAST : WRITE_TURN, turnParameters(records));
}

/** $1 to $29, in the order the text numbers them. */
function turnParameters(records: TurnRecords): unknown[] {
  const { lease } = records;
  const delivered = deliveredValues(records.delivered);
  return [
    records.taskId,
    ...changeParameters(records.changes),
    lease.worker,
    lease.ms,
    lease.expectedStep,
    JSON.stringify(modelCallRow(records.modelCall)),
    JSON.stringify(records.conversation.map(conversationRow)),
    JSON.stringify(records.toolCalls.map(toolCallRow)),
    JSON.stringify(records.handoffs.map(handoffRow)),
    JSON.stringify(records.audits.map(auditRow)),
    JSON.stringify(records.outbox.map(outboxRow)),
    delivered[0],
    records.arrivalsOf ?? null,
    lease.expectedOwner,
    lease.expectedStint,
    delivered[1],
  ];
}

/** $2 to $15: the task's SET clause. */
function changeParameters(c: TaskChanges): unknown[] {
  return [
    c.status ?? null,
    c.owner?.kind ?? null,
    c.owner?.id ?? null,
    c.stepNo ?? null,
    c.newStint ? 1 : 0,
    c.hop ? 1 : 0,
    c.handbackStack ? JSON.stringify(c.handbackStack) : null,
    c.facts ? JSON.stringify(c.facts) : null,
    c.addTokens ?? 0,
    c.addCostUsd ?? 0,
    c.failureReason !== undefined,
    c.failureReason ?? null,
    c.modelErrors ?? null,
    c.urgency ?? null,
  ];
}

function modelCallRow(m: ModelCallRecord) {
  return {
    step_no: m.stepNo,
    agent_id: m.agentId,
    model: m.model,
    prompt_tokens: m.promptTokens,
    completion_tokens: m.completionTokens,
    cost_usd: m.costUsd,
    latency_ms: m.latencyMs,
    request_chars: m.requestChars,
    outcome: m.outcome,
    usage_estimated: m.usageEstimated ?? false,
  };
}

function conversationRow(r: ConversationRecord) {
  return { stint_no: r.stintNo, step_no: r.stepNo, message: r.message };
}

function toolCallRow(t: ToolCallRecord) {
  return {
    step_no: t.stepNo,
    agent_id: t.agentId,
    tool: t.tool,
    tool_class: t.toolClass,
    args: t.args ?? null,
    idempotency_key: t.idempotencyKey,
    status: t.status,
    result: t.result ?? null,
    allowed_by: t.allowedBy,
  };
}

function handoffRow(h: HandoffRecord) {
  return {
    step_no: h.stepNo,
    kind: h.kind,
    from_kind: h.from.kind,
    from_id: h.from.id,
    to_kind: h.to.kind,
    to_id: h.to.id,
    note: h.note,
  };
}

function auditRow(e: AuditInput) {
  return {
    task_id: e.taskId,
    actor_kind: e.actor.kind,
    actor_id: e.actor.id,
    kind: e.kind,
    data: e.data ?? {},
  };
}

function outboxRow(o: OutboxMessage) {
  return {
    task_id: o.taskId,
    method: o.intent.kind,
    payload: { intent: o.intent, cardOf: o.cardOf ?? null },
  };
}
