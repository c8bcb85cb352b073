import { sql } from "kysely";
import type { ChatIntent } from "../core/ports.ts";
import type { Executor, Tx } from "./database.ts";

/** A Slack write decided inside a transaction, delivered after it commits. */
export interface OutboxMessage {
  taskId: string | null;
  intent: ChatIntent;
  /** After delivery, remember the message ts on this row (to update the card later). */
  cardOf?: CardRef;
  /**
   * A card update whose card's ts was not saved when it was decided (a click can come before
   * Slack's answer to the post): the ts this row remembers is read when the update is delivered.
   */
  updateOf?: CardRef;
  /** What the audit trail records of the message's fate, once it is known. */
  audited?: DeliveryAudit;
}

export type CardRef = { table: "approvals" | "escalations"; id: string };

/**
 * Audit events of the row's task, recorded by the deliverer in the transaction that marks the row:
 * `sent` once Slack has the message, `refused` (with Slack's error) if Slack refuses it for good.
 * So the trail never says a message went that is still waiting, or died. Only deliverOutbox records
 * them: a turn's rows, which its run posts, carry none.
 */
export type DeliveryAudit = { sent: string; refused: string; data: Record<string, unknown> };

function outboxRows(messages: readonly OutboxMessage[]) {
  return messages.map((m) => ({
    task_id: m.taskId,
    method: m.intent.kind,
    payload: JSON.stringify({
      intent: m.intent,
      cardOf: m.cardOf ?? null,
      ...(m.updateOf && { updateOf: m.updateOf }),
      ...(m.audited && { audited: m.audited }),
    }),
  }));
}

export async function enqueueOutbox(tx: Tx, messages: readonly OutboxMessage[]): Promise<void> {
  if (messages.length === 0) return;
  await tx.insertInto("slack_outbox").values(outboxRows(messages)).execute();
}

/**
 * Written out, not as parameters: the planner can then use slack_outbox_pending_idx (rows not yet
 * sent) in a prepared statement's generic plan too, instead of reading every row ever posted.
 */
const UNDELIVERED = sql<boolean>`status <> 'sent' and status <> 'dead'`;

/** Not backing off after a failure. */
const DUE = sql<boolean>`(next_attempt_at is null or next_attempt_at <= now())`;

/** The first undelivered row of its task (a row with no task stands alone). */
const HEAD_OF_TASK = sql<boolean>`(task_id is null or not exists (select from slack_outbox earlier
  where earlier.task_id = slack_outbox.task_id and earlier.id < slack_outbox.id
    and earlier.status <> 'sent' and earlier.status <> 'dead'))`;

/** No worker holds the row's task (a row with no task has none). */
const NOT_LEASED = sql<boolean>`not exists (select from tasks
  where tasks.id = slack_outbox.task_id and tasks.lease_until > now())`;

/**
 * The row was written over `ms` ago, by the database's clock, which stamped it: a replica's own may
 * be off by more than a delivery takes.
 */
const writtenOver = (ms: number) =>
  sql<boolean>`created_at < now() - ${`${ms} milliseconds`}::interval`;

/**
 * Its task's lease ran out without being let go: the run that wrote the row died, perhaps while
 * Slack was taking it, however young the row is (a lease may be shorter than `strandedAfterMs`).
 */
const LEFT_BY_A_DEAD_RUN = sql<boolean>`exists (select from tasks
  where tasks.id = slack_outbox.task_id and tasks.lease_owner is not null
    and tasks.lease_until <= now())`;

/** The row may already be in Slack: its writer had time to post it, or died trying. */
const stranded = (ms: number) => sql<boolean>`(${writtenOver(ms)} or ${LEFT_BY_A_DEAD_RUN})`;

/** What a deliverer reads of a row it locked. */
const ROW_COLUMNS = [
  "id",
  "task_id",
  "method",
  "payload",
  "attempts",
  "status",
  "created_at",
  "written_by",
] as const;

/** Rows of the tasks one pass holds: enough for a thread's backlog, bounded in an outage. */
const ROWS_PER_PASS = 200;

/**
 * Locks the undelivered rows of the tasks this deliverer takes, in order. A task is taken by
 * locking its first undelivered row, skipping a task whose first row another deliverer holds: so
 * one deliverer at a time sends a task's rows, and a row never goes out past an earlier one still
 * in someone's hands. A first row backing off after a failure keeps its task's rows back; `due`
 * says whether a later row may go (one that failed alone waits, with the rows behind it).
 * Only the worker holding a task's lease (`holdsLease`) takes a leased task: it posts rows without
 * locking them, so anyone else could send a row it is posting, or a card update before it has
 * saved the card's ts. It waits for a task held by another deliverer instead (see lockHeldTasks).
 * `stranded`: the row was written over `strandedAfterMs` before this read, or by a run that died.
 */
export async function lockUndelivered(
  tx: Tx,
  filter: {
    taskIds?: readonly string[];
    olderThanMs?: number;
    holdsLease?: boolean;
    limit: number;
    strandedAfterMs: number;
  },
) {
  if (filter.holdsLease && filter.taskIds)
    return lockHeldTasks(tx, filter.taskIds, filter.strandedAfterMs);
  return (
    tx
      .with("heads", (db) => {
        let heads = db
          .selectFrom("slack_outbox")
          .select(["id", "task_id"])
          .where(UNDELIVERED)
          .where(DUE)
          .where(HEAD_OF_TASK)
          .orderBy("id")
          .limit(filter.limit)
          .forUpdate()
          .skipLocked();
        if (filter.taskIds) heads = heads.where("task_id", "in", filter.taskIds);
        if (!filter.holdsLease) heads = heads.where(NOT_LEASED);
        if (filter.olderThanMs !== undefined)
          heads = heads.where(
            "created_at",
            "<",
            sql<Date>`now() - ${`${filter.olderThanMs} milliseconds`}::interval`,
          );
        return heads;
      })
      .selectFrom("slack_outbox")
      .select(ROW_COLUMNS)
      .select(DUE.as("due"))
      .select(stranded(filter.strandedAfterMs).as("stranded"))
      .where(UNDELIVERED)
      .where((eb) =>
        eb.or([
          eb("id", "in", eb.selectFrom("heads").select("id")),
          eb("task_id", "in", eb.selectFrom("heads").select("task_id")),
        ]),
      )
      .orderBy("id")
      .limit(ROWS_PER_PASS)
      // Later rows of a task whose first row this pass holds: no other deliverer takes them, so this
      // waits at most for a single statement marking one sent.
      .forUpdate()
      .execute()
  );
}

/**
 * Locks the undelivered rows of tasks whose lease the caller holds, in order, waiting for a
 * deliverer that took a task's first row before the lease was taken (a sweep, a click's delivery)
 * rather than skipping it: once the task is leased, that deliverer's next pass leaves the rows
 * behind to the lease's holder, so skipped here, they would wait for the sweep. The wait lasts one
 * pass of Slack calls, which nobody else starts on a leased task; the caller holds no other lock
 * (a run delivers between its turns). Rows that deliverer sent meanwhile are read as committed
 * (sent, so left out; or failed, and backing off). Its tasks' rows whatever their age: `olderThanMs`
 * only has them looked for in Slack first.
 */
function lockHeldTasks(tx: Tx, taskIds: readonly string[], strandedAfterMs: number) {
  return tx
    .selectFrom("slack_outbox")
    .select(ROW_COLUMNS)
    .select(DUE.as("due"))
    .select(stranded(strandedAfterMs).as("stranded"))
    .where(UNDELIVERED)
    .where("task_id", "in", taskIds)
    .orderBy("id")
    .limit(ROWS_PER_PASS)
    .forUpdate()
    .execute();
}

/** Whether any of these tasks has a row that may be sent now, by whoever may send it. */
export async function hasDueRows(
  db: Executor,
  taskIds: readonly string[],
  holdsLease: boolean,
): Promise<boolean> {
  const found = await db
    .selectFrom("slack_outbox")
    .select("id")
    .where(UNDELIVERED)
    .where(DUE)
    .where("task_id", "in", taskIds)
    .where(holdsLease ? sql<boolean>`true` : NOT_LEASED)
    .limit(1)
    .executeTakeFirst();
  return found !== undefined;
}

export async function rememberCard(
  db: Executor,
  cardOf: CardRef,
  channel: string,
  ts: string,
): Promise<void> {
  await db
    .updateTable(cardOf.table)
    .set({ card_channel: channel, card_ts: ts })
    .where("id", "=", cardOf.id)
    .execute();
}

/** Where a card's message is, once its delivery has saved it. */
export async function cardAt(
  db: Executor,
  card: CardRef,
): Promise<{ channel: string; ts: string } | undefined> {
  const row = await db
    .selectFrom(card.table)
    .select(["card_channel", "card_ts"])
    .where("id", "=", card.id)
    .executeTakeFirst();
  return row?.card_channel && row.card_ts
    ? { channel: row.card_channel, ts: row.card_ts }
    : undefined;
}

/** Whether a notice of the task starting with `prefix` (a page, say) is still to be sent. */
export async function noticeWaiting(db: Executor, taskId: string, prefix: string) {
  const row = await db
    .selectFrom("slack_outbox")
    .select("id")
    .where("task_id", "=", taskId)
    .where(UNDELIVERED)
    .where("method", "=", "notice")
    .where(sql<string>`payload->'intent'->>'text'`, "like", `${prefix}%`)
    .executeTakeFirst();
  return row !== undefined;
}
