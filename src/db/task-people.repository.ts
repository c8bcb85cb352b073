import type { Executor } from "./database.ts";

/** Who was on a task, for deciding who may read it from Slack. */
export interface TaskPeople {
  id: string;
  /** The channel of the task's thread. */
  channelId: string;
  /**
   * Slack user, group and (for a lane that escalates to a channel) channel ids: the requester, the
   * human owners now, and every human side of its handoffs (owners before, approvers asked,
   * deciders, people who took it over or sent it back).
   */
  people: string[];
}

/**
 * Handoffs record every ownership change and decision, so they name the humans on a task without
 * reading its audit trail. The audit trail would also name people who were merely refused (a
 * `/baton done` from anyone records `close_refused`), which must not open a task to them.
 */
export async function peopleOnTasks(
  db: Executor,
  taskIds: readonly string[],
): Promise<TaskPeople[]> {
  if (taskIds.length === 0) return [];
  const tasks = await db
    .selectFrom("tasks")
    .select(["id", "channel_id", "requester_id", "owner_kind", "owner_id"])
    .where("id", "in", taskIds)
    .execute();
  const handoffs = await db
    .selectFrom("handoffs")
    .select(["task_id", "from_kind", "from_id", "to_kind", "to_id"])
    .where("task_id", "in", taskIds)
    .where((eb) => eb.or([eb("from_kind", "=", "human"), eb("to_kind", "=", "human")]))
    .execute();
  return tasks.map((t) => {
    const sides = handoffs
      .filter((h) => h.task_id === t.id)
      .flatMap((h) => [humanIds(h.from_kind, h.from_id), humanIds(h.to_kind, h.to_id)]);
    const people = [t.requester_id, ...humanIds(t.owner_kind, t.owner_id), ...sides.flat()];
    return { id: t.id, channelId: t.channel_id, people: [...new Set(people)] };
  });
}

/** A human owner or side may be several people and groups, comma-separated. */
function humanIds(kind: string, id: string): string[] {
  return kind === "human" ? id.split(",") : [];
}
