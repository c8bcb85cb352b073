import type { ChatIntent, ChatSurface } from "../core/ports.ts";
import type { Db, Executor, Tx } from "../db/database.ts";
import { audit } from "../db/ledger.repository.ts";
import {
  type CardRef,
  cardAt,
  type DeliveryAudit,
  hasDueRows,
  lockUndelivered,
  rememberCard,
} from "../db/outbox.repository.ts";
import { markDelivered, markFailed, markRateLimited } from "../db/outbox-marks.repository.ts";
import { isBatonError, RetryAfterError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { rateLimitWaitMs, sleepUnlessStopping } from "./retry-after.ts";

/** Delivery normally follows its commit within milliseconds. */
const STRANDED_AFTER_MS = 5_000;
/**
 * A row Slack failed to take for a reason that may pass (an outage, 429s) is tried again for as
 * long as it takes: nothing accepted is dropped. Only Slack refusing the message itself (a bad
 * channel, bad blocks) is final. After its first failure a row may go at the next chance: most
 * failures are one blip (a 503, a 429), and a run's next turn is the only chance to send the
 * thread's held-back rows before the sweep, half a minute later. Then the wait doubles, to 5 min.
 */
const RETRY_SECOND_MS = 2_000;
const RETRY_MAX_MS = 5 * 60_000;
/** Two minutes and more of failed tries: Slack is more likely unreachable than busy. */
const FAILING_LONG_ATTEMPTS = 8;

/** How long a row waits after its `attempts`-th failed try (counting that one). */
export function retryDelayMs(attempts: number): number {
  if (attempts <= 1) return 0;
  return Math.min(RETRY_MAX_MS, RETRY_SECOND_MS * 2 ** (attempts - 2));
}

interface OutboxPayload {
  intent: ChatIntent;
  cardOf: CardRef | null;
  updateOf?: CardRef;
  audited?: DeliveryAudit;
}

/** A caller's filter: one task's rows, the rows stranded this long, and whose lease it holds. */
export interface OutboxFilter {
  taskId?: string;
  olderThanMs?: number;
  holdsLease?: boolean;
}

/**
 * Retriable failures after which a pass stops: Slack is down or throttling, and a sweep going on
 * through its fifty tasks would only add fifty failed calls. The rest waits for the next pass.
 */
const FAILURES_PER_PASS = 3;

/** Passes over the same tasks, while rows keep arriving for them, before leaving them to the sweep. */
const MAX_PASSES = 5;

type PassFilter = { taskIds?: readonly string[]; olderThanMs?: number; holdsLease: boolean };

export type DeliveryDeps = {
  db: Db;
  chat: ChatSurface;
  log: Logger;
  /**
   * The application_name this process's sessions stamp the rows they write with (see RuntimeDeps):
   * a row another process wrote may be in Slack already, its writer dead while Slack took it.
   * Without it, only a row's tries, age or dead run make it looked for.
   */
  writer?: string;
  /**
   * Aborts as the process begins to stop: a run's delivery then sits out no Retry-After (tens of
   * seconds, past the platform's grace period). The row stays in the outbox, due after the wait,
   * for the next process's sweep or another replica's.
   */
  stopping?: AbortSignal;
};

/**
 * Delivers what committed transactions decided to say, in order, once.
 * One deliverer at a time sends a task's rows (see lockUndelivered), so two never send the same
 * row and none sends a row past an earlier one; a row sent by a process that died before marking
 * it is found by its metadata instead of sent again. A row that failed waits out its retry delay,
 * and its task's later rows wait behind it.
 */
export async function deliverOutbox(
  deps: DeliveryDeps,
  filter: OutboxFilter = {},
): Promise<number> {
  const holdsLease = filter.holdsLease ?? false;
  const asked: PassFilter = {
    taskIds: filter.taskId ? [filter.taskId] : undefined,
    olderThanMs: filter.olderThanMs,
    holdsLease,
  };
  let pass = await deliverPass(deps, asked);
  let delivered = pass.delivered;
  for (let i = 1; i < MAX_PASSES; i++) {
    let next: PassFilter;
    // Slack asked to wait (a 429's Retry-After, often tens of seconds): the pass stopped there and
    // committed, the row not due before then and its task's later rows behind it, whoever delivers
    // them. A run waits it out for its own thread, holding its lease and no row, unless the process
    // is stopping; any other deliverer (a sweep, a deadline's, a digest's) leaves the rows to the
    // sweep after it.
    if (pass.rateLimitedForMs !== undefined) {
      if (!holdsLease || !(await sleepUnlessStopping(pass.rateLimitedForMs, deps.stopping))) break;
      next = asked;
    }
    // Another deliverer that found a task held by this pass left the rows it came to send to it:
    // they are sent now, not half a minute later by the sweep.
    else if (pass.tasks.length > 0 && (await hasDueRows(deps.db, pass.tasks, holdsLease)))
      next = { taskIds: pass.tasks, holdsLease };
    else break;
    pass = await deliverPass(deps, next);
    delivered += pass.delivered;
  }
  return delivered;
}

/**
 * One transaction's delivery: the rows it sent, the tasks it sent them for, and how long Slack asked
 * to wait if it answered 429 (the pass stops there; the row goes after the wait).
 */
async function deliverPass(
  deps: DeliveryDeps,
  filter: PassFilter,
): Promise<{ delivered: number; tasks: string[]; rateLimitedForMs?: number }> {
  let delivered = 0;
  let rateLimitedForMs: number | undefined;
  const tasks = new Set<string>();
  await deps.db.transaction().execute(async (tx) => {
    const rows = await lockUndelivered(tx, {
      ...filter,
      limit: 50,
      strandedAfterMs: STRANDED_AFTER_MS,
    });
    // Cards this pass sent, saved on their approvals and escalations only after its last Slack
    // call: saved at once, a card's row would stay locked through the pass's later calls, and a
    // click on the card (which locks that row) would wait behind them.
    const cards = new Map<string, PostedCard>();
    // Tasks with a row that failed in this pass, or backing off from an earlier one: their later
    // rows wait, so the thread keeps its order; other tasks' rows go on.
    const waiting = new Set<string>();
    let failures = 0;
    for (const row of rows) {
      if (failures >= FAILURES_PER_PASS) break;
      if (row.task_id && waiting.has(row.task_id)) continue;
      if (!row.due) {
        if (row.task_id) waiting.add(row.task_id);
        continue;
      }
      try {
        await deliverRow(deps, tx, row, filter, cards);
        delivered++;
        if (row.task_id) tasks.add(row.task_id);
      } catch (error) {
        const stored = row.payload as unknown as OutboxPayload;
        const log = deps.log.child({
          taskId: row.task_id,
          outboxId: row.id,
          intent: stored.intent.kind,
        });
        const failed = { ...row, ...(stored.audited && { audited: stored.audited }) };
        if (!(await recordFailure(tx, log, failed, error))) continue;
        if (error instanceof RetryAfterError) {
          rateLimitedForMs = rateLimitWaitMs(error);
          break;
        }
        failures++;
        if (row.task_id) waiting.add(row.task_id);
      }
    }
    // In key order: a halt locks a task's approvals in id order, so the two never lock crosswise.
    for (const [, card] of [...cards].sort(([a], [b]) => (a < b ? -1 : 1)))
      await rememberCard(tx, card.ref, card.channel, card.ts);
  });
  return {
    delivered,
    tasks: [...tasks],
    ...(rateLimitedForMs !== undefined && { rateLimitedForMs }),
  };
}

type LockedRow = Awaited<ReturnType<typeof lockUndelivered>>[number];

/**
 * Sends one row (or finds it in Slack already) and marks it delivered; a card it posts is noted in
 * `cards`, to be saved on its approval or escalation once the pass's Slack calls are done.
 */
async function deliverRow(
  deps: DeliveryDeps,
  tx: Tx,
  row: LockedRow,
  filter: PassFilter,
  cards: Map<string, PostedCard>,
): Promise<void> {
  const stored = row.payload as unknown as OutboxPayload;
  const payload = { ...stored, intent: await withCardTs(tx, stored, cards) };
  // A row whose writer may have died after Slack took it may already be in Slack: one tried
  // before, asked for (a backlog), older than a delivery takes, left by a dead run, or written
  // by another process. Look before sending it.
  const suspect =
    row.attempts > 0 ||
    filter.olderThanMs !== undefined ||
    row.stranded ||
    (deps.writer !== undefined && row.written_by !== deps.writer);
  const already = suspect
    ? await deps.chat.findPosted(payload.intent, row.id, row.created_at)
    : undefined;
  const sent = already ? { ts: already } : await deps.chat.deliver(payload.intent, row.id);
  await markDelivered(tx, [{ id: row.id, slackTs: sent.ts ?? null }]);
  if (stored.audited) await auditFate(tx, row.task_id, stored.audited, "sent");
  if (payload.cardOf && sent.ts)
    cards.set(cardKey(payload.cardOf), {
      ref: payload.cardOf,
      channel: sent.channel ?? intentChannel(payload.intent),
      ts: sent.ts,
    });
}

/**
 * Marks a row's failed try: dead if Slack refused the message itself, else to try again later.
 * A 429 is no failed try: Slack stored nothing, so the row waits out its Retry-After only.
 */
export async function recordFailure(
  db: Executor,
  log: Logger,
  row: { id: string; attempts: number; task_id?: string | null; audited?: DeliveryAudit },
  error: unknown,
): Promise<boolean> {
  if (error instanceof RetryAfterError) {
    log.info({ err: error }, "slack asked to wait; the message goes after its Retry-After");
    await markRateLimited(db, row.id, errorText(error), rateLimitWaitMs(error));
    return true;
  }
  const retriable = !isBatonError(error) || error.retriable;
  const attempts = row.attempts + 1;
  const retryInMs = retryDelayMs(attempts);
  // Not an error of Slack's: a fault in Baton itself, which a retry repeats until it is fixed.
  // The message is kept, and its thread waits behind it, for a release that fixes it.
  if (!isBatonError(error))
    log.error(
      { err: error, attempts, retryInMs },
      "slack delivery failed on an unexpected error; the message waits, and is tried again",
    );
  else if (retriable && attempts >= FAILING_LONG_ATTEMPTS)
    log.error(
      { err: error, attempts, retryInMs },
      "slack delivery still failing: is Slack reachable? the message will be tried again",
    );
  else log.warn({ err: error, dead: !retriable, attempts }, "slack delivery failed");
  await markFailed(db, row.id, errorText(error), retriable ? { inMs: retryInMs } : "dead");
  if (!retriable && row.audited)
    await auditFate(db, row.task_id ?? null, row.audited, "refused", errorText(error));
  return retriable;
}

/** The audit event a row asked for (see DeliveryAudit), in the transaction that marks it. */
async function auditFate(
  db: Executor,
  taskId: string | null,
  audited: DeliveryAudit,
  fate: "sent" | "refused",
  error?: string,
): Promise<void> {
  await audit(db, {
    taskId,
    actor: { kind: "system", id: "baton" },
    kind: audited[fate],
    data: { ...audited.data, ...(error !== undefined && { error }) },
  });
}

function errorText(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).slice(0, 500);
}

/** A card a pass sent, and where Slack put it, to save on its row before the pass commits. */
type PostedCard = { ref: CardRef; channel: string; ts: string };

const cardKey = (card: CardRef) => `${card.table}:${card.id}`;

/**
 * A card update decided before its card's ts was saved targets the ts saved since: a task's rows go
 * out in order, so the card's own post was delivered, and its ts saved (or kept in `posted`, by
 * this pass), before this row.
 */
async function withCardTs(
  tx: Tx,
  { intent, updateOf }: OutboxPayload,
  posted: ReadonlyMap<string, PostedCard>,
): Promise<ChatIntent> {
  if (intent.kind !== "approval_card" && intent.kind !== "escalation_card") return intent;
  if (!updateOf) return intent;
  const card = posted.get(cardKey(updateOf)) ?? (await cardAt(tx, updateOf));
  // The card is updated where it was posted, whatever the settings say now.
  const channel = card?.channel ?? intent.channel;
  const ts = intent.updateTs ?? card?.ts;
  // With no ts, the card never reached Slack (Slack refused it): the update is the card.
  return ts ? { ...intent, channel, updateTs: ts } : intent;
}

export function intentChannel(intent: ChatIntent): string {
  return intent.kind === "direct_message" || intent.kind === "digest_dm"
    ? intent.user
    : intent.channel;
}
