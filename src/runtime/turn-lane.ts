import { type Db, openLane } from "../db/database.ts";
import type { Delivered } from "../db/outbox-marks.repository.ts";
import type { RunDeliveries } from "./run-deliveries.ts";
import type { TurnLane, WrittenTurnResult } from "./turn.ts";

/**
 * A run's turns written behind: each turn's statement goes out on the run's own connection and the
 * next turn starts at once from the state that statement will return. Postgres runs them in the
 * order sent, and each checks the step, owner and stint it was given and that no other run holds
 * the task, so a turn behind one that was dropped writes nothing either. What a turn answered is
 * taken in here: a dropped turn gives back the posts it would have marked sent and stops the run; a
 * waiting reply makes the next turn read the task again.
 */
export interface RunLane extends TurnLane {
  /** Takes what a turn's statement answers, in the order the turns ran. */
  track(written: Promise<WrittenTurnResult>, marks: readonly Delivered[]): void;
  /** A turn behind was dropped: the run stops (the step moved on under it). */
  readonly dropped: boolean;
  /** A turn behind found a person's reply waiting: the next turn reads the task first. */
  takeReadAgain(): boolean;
  /** Waits for every statement, whatever they answered; for the run's end. */
  drained(): Promise<void>;
}

export function runLane(db: Db, deliveries: RunDeliveries): RunLane {
  const statements = openLane(db);
  let behind: Promise<unknown> = Promise.resolve();
  let dropped = false;
  let readAgain = false;
  let error: unknown;
  return {
    statements,
    track(written, marks) {
      const settled = written.then(
        (result) => {
          if (!result.written) {
            deliveries.giveBack(marks);
            dropped = true;
          }
          if (result.hasNewInputs) readAgain = true;
        },
        (thrown: unknown) => {
          // Its posts were not marked: the release marks them, or they are found in Slack later.
          deliveries.giveBack(marks);
          dropped = true;
          error ??= thrown;
        },
      );
      behind = Promise.all([behind, settled]);
    },
    async settled() {
      await behind;
      if (error) throw error;
      return !dropped;
    },
    get dropped() {
      return dropped;
    },
    takeReadAgain() {
      const again = readAgain;
      readAgain = false;
      return again;
    },
    async drained() {
      await behind;
      await statements.idle();
    },
  };
}
