import { sql } from "kysely";
import { jsonArrayFrom } from "kysely/helpers/postgres";
import type { Tx } from "./database.ts";
import {
  type AuditInput,
  auditRows,
  type ConversationRecord,
  conversationRows,
  type HandoffRecord,
  handoffRow,
  type ModelCallRecord,
  modelCallRow,
  type ToolCallRecord,
  toolCallRow,
} from "./ledger.repository.ts";
import { type Arrival, arrivalsQuery, toArrival } from "./metrics.repository.ts";
import {
  type Delivered,
  markDeliveredSql,
  type OutboxMessage,
  outboxRows,
} from "./outbox.repository.ts";
import type { TaskRow } from "./schema.ts";
import { type TaskChanges, taskChangesSet } from "./tasks.repository.ts";

export interface TurnRecords {
  taskId: string;
  changes: TaskChanges;
  modelCall: ModelCallRecord;
  conversation: readonly ConversationRecord[];
  toolCalls: readonly ToolCallRecord[];
  handoffs: readonly HandoffRecord[];
  audits: readonly AuditInput[];
  outbox: readonly OutboxMessage[];
  /** Outbox rows this worker delivered since its last turn: marked sent here, not in a commit of their own. */
  delivered: readonly Delivered[];
  /** On an agent's first turn of a stint: the handoffs to it since its last model call (handoff latency). */
  arrivalsOf?: string;
  /** The step the turn started from: the task is written only if it is still there, and the lease is extended. */
  lease: { expectedStep: number; worker: string; ms: number };
}

export interface WrittenTurn {
  /** The task as this turn left it, so the next turn need not read it again. */
  task: TaskRow;
  /** Replies from people not yet given to the agent: the next turn must read them. */
  hasNewInputs: boolean;
  /** The ids of this turn's outbox rows, in the order they were given. */
  outboxIds: string[];
  arrivals: Arrival[];
}

/**
 * Everything a turn writes, in one statement of data-modifying CTEs: its model call, conversation,
 * tool calls, handoffs, audit events and Slack outbox, the task's new state, and the earlier turn's
 * delivered messages. One round trip instead of eight, inside the turn's transaction.
 * The final SELECT reads the snapshot from before the statement, so "since the last model call"
 * and "inputs not yet consumed" do not see this turn's own rows.
 */
export async function writeTurn(tx: Tx, records: TurnRecords): Promise<WrittenTurn | undefined> {
  const { lease } = records;
  // Kysely types each CTE by its output; inserts without RETURNING have none, hence the loose chain.
  // biome-ignore lint/suspicious/noExplicitAny: see above; each statement below is fully typed.
  let query: any = tx
    .with("task_row", (db) =>
      db
        .updateTable("tasks")
        .set(taskChangesSet(records.changes))
        .set({
          lease_owner: lease.worker,
          lease_until: sql<Date>`now() + ${`${lease.ms} milliseconds`}::interval`,
        })
        .where("id", "=", records.taskId)
        .where("step_no", "=", lease.expectedStep)
        .where("status", "=", "active")
        .where("owner_kind", "=", "agent")
        .returningAll(),
    )
    .with("model_call", (db) =>
      db.insertInto("model_calls").values(modelCallRow(records.modelCall)),
    );
  const inserts = [
    ["conversation_rows", "conversation", conversationRows(records.conversation)],
    ["tool_call_rows", "tool_calls", records.toolCalls.map(toolCallRow)],
    ["handoff_rows", "handoffs", records.handoffs.map(handoffRow)],
    ["audit_rows", "audit_events", auditRows(records.audits)],
  ] as const;
  for (const [name, table, rows] of inserts) {
    if (rows.length > 0) query = query.with(name, (db: Tx) => db.insertInto(table).values(rows));
  }
  if (records.outbox.length > 0) {
    query = query.with("outbox_rows", (db: Tx) =>
      db.insertInto("slack_outbox").values(outboxRows(records.outbox)).returning("id"),
    );
  }
  if (records.delivered.length > 0)
    // A raw statement is not parenthesised as a CTE body by kysely.
    query = query.with("delivered_rows", () => sql`(${markDeliveredSql(records.delivered)})`);
  const arrivalsOf = records.arrivalsOf;
  const row = await query
    .selectFrom("task_row")
    .selectAll("task_row")
    // biome-ignore lint/suspicious/noExplicitAny: the loose chain above.
    .select((eb: any) => [
      eb
        .exists(
          eb
            .selectFrom("task_inputs")
            .select("task_inputs.id")
            .where("task_inputs.task_id", "=", records.taskId)
            .where("task_inputs.consumed_at_step", "is", null),
        )
        .as("has_new_inputs"),
      records.outbox.length > 0
        ? sql<string[]>`(select coalesce(json_agg(id order by id), '[]') from outbox_rows)`.as(
            "outbox_ids",
          )
        : sql<string[]>`'[]'::json`.as("outbox_ids"),
      arrivalsOf
        ? jsonArrayFrom(arrivalsQuery(tx, records.taskId, arrivalsOf)).as("arrivals")
        : sql`'[]'::json`.as("arrivals"),
    ])
    .executeTakeFirst();
  // No task row: another worker committed this step first; the caller rolls the statement back.
  if (!row) return undefined;
  const { has_new_inputs, outbox_ids, arrivals, ...task } = row;
  return {
    task: task as TaskRow,
    hasNewInputs: Boolean(has_new_inputs),
    // bigserial ids come back from JSON as numbers; the rest of Baton keeps them as strings.
    outboxIds: (outbox_ids as unknown[]).map(String),
    arrivals: (arrivals as Parameters<typeof toArrival>[0][]).map(toArrival),
  };
}
