import type { ChatMessage, ModelReply } from "../core/model.ts";
import { type Executor, statement, type Tx } from "./database.ts";
import { type AuditInput, auditRows } from "./ledger.repository.ts";
import type { TaskRow } from "./schema.ts";

// What a turn reads of its task (the stint's conversation, the replies since the last turn, a reply
// kept for a retry) and the replies people add to it.

/** A model reply kept for this step before a tool outside the database ran (see model_replies). */
export interface ReplayedReply {
  reply: ModelReply;
  inputIds: string[];
  latencyMs: number;
}

export interface LoadedTurn {
  task: TaskRow;
  /** Decided approvals whose parked calls are not settled yet. */
  decided: boolean;
  history: ChatMessage[];
  inputs: { id: string; author_id: string; text: string }[];
  replay?: ReplayedReply;
}

/**
 * The current stint's conversation, the replies that arrived since the last turn, and whether a
 * decided approval waits to be settled (as `decidedUnsettled` asks), as columns of a statement over
 * `tasks` (the claim of a lease reads them too).
 */
export const TURN_READS = `
  exists (select from approvals
      join tool_calls on tool_calls.idempotency_key = approvals.tool_call_id
    where approvals.task_id = tasks.id
      and approvals.status <> 'pending' and tool_calls.status = 'pending_approval') as decided,
  (select coalesce(json_agg(agg), '[]') from (
    select conversation.message from conversation
    where conversation.task_id = tasks.id and conversation.stint_no = tasks.stint_no
    order by conversation.id
  ) as agg) as history,
  (select coalesce(json_agg(agg), '[]') from (
    select task_inputs.id, task_inputs.author_id, task_inputs.text from task_inputs
    where task_inputs.task_id = tasks.id and task_inputs.consumed_at_step is null
    order by task_inputs.id
  ) as agg) as inputs,
  (select json_build_object('reply', r.reply, 'input_ids', r.input_ids, 'latency_ms', r.latency_ms)
    from model_replies r
    where r.task_id = tasks.id and r.stint_no = tasks.stint_no and r.step_no = tasks.step_no
  ) as replay`;

/** A row with `TURN_READS`: JSON's numbers for the inputs' bigserial ids. */
export type TurnReadsRow = TaskRow & {
  decided: boolean;
  history: { message: unknown }[];
  inputs: { id: number; author_id: string; text: string }[];
  replay: { reply: unknown; input_ids: string[]; latency_ms: number } | null;
};

export function toLoadedTurn(row: TurnReadsRow): LoadedTurn {
  const { decided, history, inputs, replay, ...task } = row;
  return {
    task,
    decided,
    history: history.map((h) => h.message as ChatMessage),
    // bigserial ids come back from JSON as numbers; the rest of Baton keeps them as strings.
    inputs: inputs.map((i) => ({ ...i, id: String(i.id) })),
    ...(replay && {
      replay: {
        reply: replay.reply as ModelReply,
        inputIds: replay.input_ids,
        latencyMs: replay.latency_ms,
      },
    }),
  };
}

/**
 * Keeps the reply of the turn at this step before it calls a tool outside the database; a retry
 * of the turn replays it (TURN_READS). False when a reply is kept for the step already (another
 * run's, which took the task over meanwhile): that one is what goes out.
 */
export async function keepReply(
  db: Executor,
  row: { taskId: string; stintNo: number; stepNo: number } & ReplayedReply,
): Promise<boolean> {
  const kept = await db
    .insertInto("model_replies")
    .values({
      task_id: row.taskId,
      stint_no: row.stintNo,
      step_no: row.stepNo,
      reply: JSON.stringify(row.reply),
      input_ids: JSON.stringify(row.inputIds),
      latency_ms: Math.round(row.latencyMs),
    })
    .onConflict((oc) => oc.columns(["task_id", "stint_no", "step_no"]).doNothing())
    .returning("step_no")
    .executeTakeFirst();
  return kept !== undefined;
}

const LOAD_TURN = statement<[id: string], TurnReadsRow>(
  `select tasks.*, ${TURN_READS} from tasks where tasks.id = $1`,
);

/**
 * What one turn reads, in one round trip: the task, its current stint's conversation, and the
 * replies that arrived since the last turn.
 */
export async function loadTurn(db: Executor, id: string): Promise<LoadedTurn | undefined> {
  const row = await LOAD_TURN.first(db, id);
  return row && toLoadedTurn(row);
}

/** A person's reply for the agent's next turn, with its audit events in the same statement. */
export async function insertInput(
  tx: Tx,
  input: { taskId: string; authorId: string; text: string },
  audits: readonly AuditInput[] = [],
): Promise<void> {
  const row = { task_id: input.taskId, author_id: input.authorId, text: input.text };
  if (audits.length === 0) {
    await tx.insertInto("task_inputs").values(row).execute();
    return;
  }
  await tx
    .with("input_row", (db) => db.insertInto("task_inputs").values(row))
    .insertInto("audit_events")
    .values(auditRows(audits))
    .execute();
}

// One text for any number of replies.
const CONSUME_INPUTS = statement<[stepNo: number, ids: readonly string[]], never>(
  "update task_inputs set consumed_at_step = $1 where id = any($2::bigint[])",
);

export async function consumeInputs(tx: Tx, ids: readonly string[], stepNo: number): Promise<void> {
  if (ids.length === 0) return;
  await CONSUME_INPUTS.rows(tx, stepNo, ids);
}

/** Who wrote the first reply that waits for the agent's next turn; undefined when none waits. */
export async function firstUnreadAuthor(db: Executor, taskId: string): Promise<string | undefined> {
  const row = await db
    .selectFrom("task_inputs")
    .select("author_id")
    .where("task_id", "=", taskId)
    .where("consumed_at_step", "is", null)
    .orderBy("id")
    .limit(1)
    .executeTakeFirst();
  return row?.author_id;
}

/**
 * The replies not read yet, oldest first, marked read at `stepNo`: a person who hands the work to an
 * agent puts them in its new stint before their instruction, which came after them.
 */
export async function takeUnreadInputs(
  tx: Tx,
  taskId: string,
  stepNo: number,
): Promise<{ id: string; author_id: string; text: string }[]> {
  const rows = await tx
    .updateTable("task_inputs")
    .set({ consumed_at_step: stepNo })
    .where("task_id", "=", taskId)
    .where("consumed_at_step", "is", null)
    .returning(["id", "author_id", "text"])
    .execute();
  // bigserial ids: compared as numbers, not as text ("10" < "9").
  return rows.sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
}

/**
 * Marks every reply not read yet as read at `stepNo`: a task that failed answered them with its
 * failure notice. Left unread, the end of the run would open the task again for them, and the
 * next run fail it the same way, without end.
 */
export async function consumeUnreadInputs(tx: Tx, taskId: string, stepNo: number): Promise<void> {
  await tx
    .updateTable("task_inputs")
    .set({ consumed_at_step: stepNo })
    .where("task_id", "=", taskId)
    .where("consumed_at_step", "is", null)
    .execute();
}
