import type { Executor, StatementLane } from "./database.ts";
import type {
  AuditInput,
  ConversationRecord,
  HandoffRecord,
  ModelCallRecord,
  ToolCallRecord,
} from "./ledger.repository.ts";
import { type Arrival, toArrival } from "./metrics.repository.ts";
import type { OutboxMessage } from "./outbox.repository.ts";
import type { Delivered } from "./outbox-marks.repository.ts";
import type { TaskRow } from "./schema.ts";
import type { TaskChanges } from "./tasks.repository.ts";
import { type WrittenTurnRow, writeTurnQuery } from "./turn-statement.ts";

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
  /**
   * The step, owner and stint the turn started from: the task is written only if it is still there
   * and no other run holds it, and the lease is extended.
   */
  lease: {
    expectedStep: number;
    expectedOwner: string;
    expectedStint: number;
    worker: string;
    ms: number;
  };
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

/** The error of a turn written last in its transaction whose task moved on: everything rolled back. */
export function isTurnMovedOn(error: unknown): boolean {
  return (error as { code?: string } | undefined)?.code === "BT001";
}

/**
 * Writes a turn if its task is still at the turn's step; returns the task as it now is, or nothing
 * when the step moved on. `last`: the statement ends its transaction (see `lastStatement`), and a
 * step that moved on throws (`isTurnMovedOn`) instead.
 */
export async function writeTurn(
  db: Executor | StatementLane,
  records: TurnRecords,
  options: { last?: boolean } = {},
): Promise<WrittenTurn | undefined> {
  const query = writeTurnQuery(records, options.last);
  const result = await ("send" in db
    ? db.send<WrittenTurnRow>(query)
    : db.executeQuery<WrittenTurnRow>(query));
  const row = result.rows[0];
  // No task row: another worker committed this step first. This statement wrote nothing of the turn;
  // a caller in a transaction rolls back what it wrote before.
  if (!row) return undefined;
  const { has_new_inputs, outbox_ids, arrivals, ...task } = row;
  return {
    task,
    hasNewInputs: has_new_inputs,
    // bigserial ids come back from JSON as numbers; the rest of Baton keeps them as strings.
    outboxIds: outbox_ids.map(String),
    arrivals: arrivals.map(toArrival),
  };
}
