import type { ColumnType, Generated, Insertable, Selectable } from "kysely";

/** Row types of Baton's tables, as kysely sees them. Domain types live in src/core. */
type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type Json<T> = ColumnType<T, string | T, string | T>;
/** numeric comes back from pg as a string to keep precision. */
type Numeric = ColumnType<string, number | string | undefined, number | string>;

export interface TasksTable {
  id: Generated<string>;
  channel_id: string;
  thread_ts: string;
  requester_id: string;
  title: string;
  request_text: string;
  status: ColumnType<string, string | undefined, string>;
  owner_kind: string;
  owner_id: string;
  urgency: ColumnType<string, string | undefined, string>;
  /** Handoffs between agents since a person last reopened or handed on the task (the hop limit's count). */
  hop_count: Generated<number>;
  step_no: Generated<number>;
  stint_no: Generated<number>;
  handback_stack: Json<string[]>;
  facts: Json<Record<string, unknown>>;
  tokens: Generated<number>;
  cost_usd: Numeric;
  failure_reason: string | null;
  model_errors: Generated<number>;
  lease_owner: string | null;
  lease_until: Date | null;
  /** The lease's run finished its work: it holds the task only to post what it said and let go. */
  lease_finished: Generated<boolean>;
  created_at: Timestamp;
  last_activity_at: Timestamp;
  closed_at: Date | null;
}

export interface TaskInputsTable {
  id: Generated<string>;
  task_id: string;
  author_id: string;
  text: string;
  consumed_at_step: number | null;
  created_at: Timestamp;
}

export interface HandoffsTable {
  id: Generated<string>;
  task_id: string;
  step_no: number;
  kind: string;
  from_kind: string;
  from_id: string;
  to_kind: string;
  to_id: string;
  note: Json<Record<string, unknown>>;
  created_at: Timestamp;
}

export interface ConversationTable {
  id: Generated<string>;
  task_id: string;
  stint_no: number;
  step_no: number;
  message: Json<Record<string, unknown>>;
}

export interface ModelRepliesTable {
  task_id: string;
  stint_no: number;
  step_no: number;
  reply: Json<unknown>;
  input_ids: Json<string[]>;
  latency_ms: number;
}

export interface ModelCallsTable {
  id: Generated<string>;
  task_id: string;
  step_no: number;
  agent_id: string;
  model: string;
  prompt_tokens: number;
  completion_tokens: number;
  cost_usd: Numeric;
  latency_ms: number;
  request_chars: number;
  outcome: string;
  /** The server sent no usage: the tokens (and so the cost) were estimated from characters. */
  usage_estimated: Generated<boolean>;
  created_at: Timestamp;
}

export interface ToolCallsTable {
  id: Generated<string>;
  task_id: string;
  step_no: number;
  agent_id: string;
  tool: string;
  tool_class: string;
  args: Json<unknown>;
  idempotency_key: string;
  status: string;
  result: Json<unknown> | null;
  allowed_by: string | null;
  created_at: Timestamp;
}

export interface AuditEventsTable {
  id: Generated<string>;
  task_id: string | null;
  at: Timestamp;
  actor_kind: string;
  actor_id: string;
  kind: string;
  data: Json<Record<string, unknown>>;
}

export interface SlackEventsTable {
  event_id: string;
  task_id: string | null;
  received_at: Timestamp;
}

export interface SlackOutboxTable {
  id: Generated<string>;
  task_id: string | null;
  method: string;
  payload: Json<Record<string, unknown>>;
  status: ColumnType<string, string | undefined, string>;
  attempts: Generated<number>;
  slack_ts: string | null;
  error: string | null;
  created_at: Timestamp;
  sent_at: Date | null;
  /** A row that failed for a reason that may pass is not tried again before this. */
  next_attempt_at: Date | null;
  /** The writing session's application_name (see openDatabase's `name`); none before 0020. */
  written_by: Generated<string | null>;
}

export interface ApprovalsTable {
  id: Generated<string>;
  task_id: string;
  step_no: number;
  tool_call_id: string;
  model_call_id: string;
  agent_id: string;
  tool: string;
  args: Json<Record<string, unknown>>;
  policy_id: string;
  requester_id: string;
  approvers: Json<{ users: string[]; groups: string[] }>;
  fallback: Json<{ users: string[]; groups: string[] }> | null;
  status: ColumnType<string, string | undefined, string>;
  decided_by: string | null;
  decided_at: Date | null;
  reason: string | null;
  /** Why the call waits, when its arguments alone do not say (see `Gate`). */
  why: string | null;
  expires_at: Timestamp;
  escalated_at: Date | null;
  card_channel: string | null;
  card_ts: string | null;
  created_at: Timestamp;
}

export interface EscalationsTable {
  id: Generated<string>;
  task_id: string;
  step_no: number;
  from_agent: string;
  note: Json<Record<string, unknown>>;
  owner: Json<{ kind: string; id: string }>;
  fallback: Json<{ users: string[]; groups: string[] }> | null;
  status: ColumnType<string, string | undefined, string>;
  decided_by: string | null;
  decided_at: Date | null;
  decision: Json<Record<string, unknown>> | null;
  respond_by: Timestamp;
  escalated_at: Date | null;
  card_channel: string | null;
  card_ts: string | null;
  created_at: Timestamp;
}

export interface ScheduledRunsTable {
  job: string;
  fire_at: Timestamp;
  claimed_by: string;
  claimed_at: Timestamp;
  finished_at: Date | null;
}

export interface InventoryTable {
  sku: string;
  name: string;
  on_hand: number;
  physical_count: number;
  updated_at: Timestamp;
}

export interface OrdersTable {
  id: string;
  customer_name: string;
  sku: string;
  quantity: number;
  total_usd: Numeric;
  status: string;
  blocked_reason: string | null;
  placed_at: Timestamp;
  delivered_at: Date | null;
}

export interface StockAdjustmentsTable {
  id: Generated<string>;
  sku: string;
  from_count: number;
  to_count: number;
  reason: string;
  idempotency_key: string;
  created_at: Timestamp;
}

export interface ShipmentsTable {
  id: Generated<string>;
  order_id: string;
  carrier: string;
  tracking_number: string;
  idempotency_key: string;
  created_at: Timestamp;
}

export interface ReturnsTable {
  order_id: string;
  label_code: string;
  status: string;
  received_at: Date | null;
  created_at: Timestamp;
}

export interface RefundsTable {
  id: Generated<string>;
  order_id: string;
  amount_usd: Numeric;
  reason: string;
  idempotency_key: string;
  created_at: Timestamp;
}

export interface Database {
  tasks: TasksTable;
  task_inputs: TaskInputsTable;
  handoffs: HandoffsTable;
  conversation: ConversationTable;
  model_calls: ModelCallsTable;
  model_replies: ModelRepliesTable;
  tool_calls: ToolCallsTable;
  audit_events: AuditEventsTable;
  slack_events: SlackEventsTable;
  slack_outbox: SlackOutboxTable;
  approvals: ApprovalsTable;
  escalations: EscalationsTable;
  scheduled_runs: ScheduledRunsTable;
  inventory: InventoryTable;
  orders: OrdersTable;
  stock_adjustments: StockAdjustmentsTable;
  shipments: ShipmentsTable;
  returns: ReturnsTable;
  refunds: RefundsTable;
}

export type TaskRow = Selectable<TasksTable>;
export type ApprovalRow = Selectable<ApprovalsTable>;
export type NewAuditEvent = Insertable<AuditEventsTable>;
