import { type OutboxMessage, rememberCard } from "../db/outbox.repository.ts";
import { type Delivered, markDelivered } from "../db/outbox-marks.repository.ts";
import { type DeliveryDeps, intentChannel, recordFailure } from "./outbox.ts";
import { waitingOutRateLimits } from "./retry-after.ts";

/**
 * Delivers what a turn just committed, by the worker holding the task's lease, without locking the
 * rows: the sweeper leaves a leased task's rows alone, and a row posted by a process that died
 * before marking it is found in Slack by its outbox id instead of posted again. Returns the rows
 * delivered, for the next turn to mark sent. A failure is recorded and stops the delivery (the
 * thread keeps its order); `failed` tells the caller to go through deliverOutbox from then on.
 */
async function deliverFresh(
  deps: DeliveryDeps,
  rows: readonly { id: string; message: OutboxMessage }[],
): Promise<{ delivered: Delivered[]; failed: boolean }> {
  const delivered: Delivered[] = [];
  for (const { id, message } of rows) {
    try {
      // A run posts holding no row locks (its lease keeps others off its rows): waiting out a 429
      // holds nothing back but its own thread. After a few, or at a stop, the row is left to
      // deliverOutbox, or to the sweep after the wait.
      const sent = await waitingOutRateLimits(
        () => deps.chat.deliver(message.intent, id),
        deps.stopping,
        "leave",
      );
      if (message.cardOf && sent.ts) {
        // A card's buttons need its ts at once, and a click may deliver this task's outbox: remember
        // the ts and mark the card, with the rows sent before it, now.
        await rememberCard(
          deps.db,
          message.cardOf,
          sent.channel ?? intentChannel(message.intent),
          sent.ts,
        );
        // Cleared once marked: rows a failed mark leaves are in Slack, and their run marks them later.
        await markDelivered(deps.db, [...delivered, { id, slackTs: sent.ts }]);
        delivered.length = 0;
      } else delivered.push({ id, slackTs: sent.ts ?? null });
    } catch (error) {
      const log = deps.log.child({
        taskId: message.taskId,
        outboxId: id,
        intent: message.intent.kind,
      });
      // The run sends it again, at its next chance, through deliverOutbox (which looks in Slack).
      if (await recordFailure(deps.db, log, { id, attempts: 0 }, error))
        return { delivered, failed: true };
    }
  }
  return { delivered, failed: false };
}

/**
 * A run's Slack posts, sent in order behind its turns: a turn's messages go out while the next turn
 * calls the model and commits, so the post's round trip is off the turn path. Rows posted here are
 * marked sent by the next turn's statement (`take`), or by `flush` before anything else delivers.
 */
export interface RunDeliveries {
  /**
   * Posts a turn's rows after those already queued, once its statement has answered with their ids
   * (a turn that failed or was dropped has none to post; the run hears of it from its lane).
   */
  send(rows: Promise<readonly { id: string; message: OutboxMessage }[]>): void;
  /** Rows posted and not yet marked sent; the caller marks them or gives them back. */
  take(): Delivered[];
  giveBack(rows: readonly Delivered[]): void;
  /** Waits for the queued posts and marks every posted row sent. */
  flush(): Promise<void>;
  /** Waits for the queued posts; throws what went wrong in them. */
  settled(): Promise<void>;
  /** Waits for the queued posts and takes the rows posted, for the caller to mark sent. */
  drain(): Promise<Delivered[]>;
  /** A post failed: rows after it were left in the outbox for the locked path (deliverOutbox). */
  readonly failed: boolean;
}

export function runDeliveries(deps: DeliveryDeps): RunDeliveries {
  let tail: Promise<void> = Promise.resolve();
  let failed = false;
  // A database error while posting (marking a card, say): kept for flush to throw, never left as an
  // unhandled rejection between turns.
  let error: unknown;
  let posted: Delivered[] = [];
  return {
    send(rows) {
      const committed = rows.catch(() => []);
      tail = tail
        .then(async () => {
          const written = await committed;
          // The thread keeps its order: after a failure, later rows wait for deliverOutbox.
          if (failed || written.length === 0) return;
          const result = await deliverFresh(deps, written);
          posted.push(...result.delivered);
          failed = result.failed;
        })
        .catch((thrown: unknown) => {
          failed = true;
          error ??= thrown;
        });
    },
    take() {
      const rows = posted;
      posted = [];
      return rows;
    },
    giveBack(rows) {
      posted = [...rows, ...posted];
    },
    async flush() {
      await tail;
      const rows = posted;
      posted = [];
      // Not marked, they are still in Slack: given back, for the release to mark.
      await markDelivered(deps.db, rows).catch((failed: unknown) => {
        posted = [...rows, ...posted];
        throw failed;
      });
      if (error) throw error;
    },
    async settled() {
      await tail;
      if (error) throw error;
    },
    async drain() {
      await tail;
      const rows = posted;
      posted = [];
      return rows;
    },
    get failed() {
      return failed;
    },
  };
}
