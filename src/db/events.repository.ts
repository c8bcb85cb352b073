import type { Tx } from "./database.ts";

/**
 * Records a received Slack message under every key it can arrive by (its event id, and the
 * channel + ts of the message, since one mention arrives both as app_mention and as message),
 * with the task it belongs to. Returns false when any key was seen before: a redelivery or a twin
 * event (the caller rolls back).
 */
export async function recordReceived(
  tx: Tx,
  keys: readonly string[],
  taskId: string,
): Promise<boolean> {
  const inserted = await tx
    .insertInto("slack_events")
    .values(keys.map((event_id) => ({ event_id, task_id: taskId })))
    .onConflict((oc) => oc.column("event_id").doNothing())
    .returning("event_id")
    .execute();
  return inserted.length === keys.length;
}
