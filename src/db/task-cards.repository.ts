import type { Executor } from "./database.ts";

export interface CardPlace {
  channel: string;
  ts: string;
}

/**
 * Where the people on each task decide on it: its newest escalation card, else its newest
 * approval card (a card's message once delivered). An escalation's comes first: its thread is
 * where the person holding the task works, and a reply there reaches the task (migration 0014).
 */
export async function cardsOfTasks(
  db: Executor,
  taskIds: readonly string[],
): Promise<Map<string, CardPlace>> {
  if (taskIds.length === 0) return new Map();
  const newest = (table: "escalations" | "approvals") =>
    db
      .selectFrom(table)
      .distinctOn("task_id")
      .select(["task_id", "card_channel", "card_ts"])
      .where("task_id", "in", taskIds)
      .where("card_ts", "is not", null)
      .orderBy("task_id")
      .orderBy("created_at", "desc")
      .execute();
  const [escalations, approvals] = await Promise.all([newest("escalations"), newest("approvals")]);
  const cards = new Map<string, CardPlace>();
  // Escalations last, so theirs wins.
  for (const row of [...approvals, ...escalations])
    if (row.card_channel && row.card_ts)
      cards.set(row.task_id, { channel: row.card_channel, ts: row.card_ts });
  return cards;
}
