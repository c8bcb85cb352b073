import { hasOpenEscalation } from "../db/escalations.repository.ts";
import { audit } from "../db/ledger.repository.ts";
import { enqueueOutbox } from "../db/outbox.repository.ts";
import { resolveTaskRef } from "../db/reports.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import { findTask, lockTask, markTaskDone } from "../db/tasks.repository.ts";
import type { RuntimeDeps } from "./deps.ts";
import { takenOverCard } from "./escalation-cards.ts";
import { isAmong } from "./escalation-owners.ts";
import { post } from "./messages.ts";
import { deliverOutbox } from "./outbox.ts";
import { type Reader, requireReadable } from "./read-access.ts";

export type CloseOutcome =
  | { outcome: "closed"; title: string }
  | { outcome: "not_found" }
  | { outcome: "already_closed"; status: string }
  /** An agent works on it, or waits on an approval. */
  | { outcome: "not_with_a_person"; owner: { kind: string; id: string } }
  /** Its escalation card waits: take it over or send it back from there first. */
  | { outcome: "escalation_open" }
  | { outcome: "not_owner"; owner: { kind: string; id: string } };

/**
 * `/baton done`: the person who took a task over (or a member of the group that owns it) says the
 * work is finished. The task closes, the thread is told, and the digest stops listing it.
 */
export async function closeTask(
  deps: RuntimeDeps,
  input: { ref: string } & Reader,
): Promise<CloseOutcome> {
  const resolved = await resolveTaskRef(deps.db, input.ref);
  // The refusals below tell the task's status and owner: words only for someone who may read it.
  // Its owners may, so nobody who could close it is stopped here.
  const readable = await requireReadable(deps, resolved, input);
  const found = await heldOrNewest(deps, readable);
  if (!found) return { outcome: "not_found" };
  const refusal = await refusalFor(deps, found, input.userId);
  if (refusal) return refusal;
  const outcome = await deps.db.transaction().execute(async (tx) => {
    const task = await lockTask(tx, found.id);
    if (!task) return { outcome: "not_found" as const };
    // Changed hands since the check (sent back to an agent, closed): judge it again.
    if (task.status !== found.status || task.owner_id !== found.owner_id) return undefined;
    const closedAt = await markTaskDone(tx, task.id);
    await audit(tx, {
      taskId: task.id,
      actor: { kind: "human", id: input.userId },
      kind: "task_closed",
      data: {},
    });
    const messages = [
      post(task, {
        kind: "notice",
        channel: task.channel_id,
        threadTs: task.thread_ts,
        text: `<@${input.userId}> ✅ marked this done.`,
      }),
    ];
    // The escalation card stops offering to hand the work to an agent.
    const closed = { by: input.userId, at: closedAt.toISOString() };
    const card = await takenOverCard(deps, tx, task, closed);
    await enqueueOutbox(tx, card ? [...messages, card] : messages);
    return { outcome: "closed" as const, title: task.title };
  });
  if (!outcome) return closeTask(deps, input);
  if (outcome.outcome === "closed") deps.metrics.tasksFinished.inc({ outcome: "closed" });
  deps.afterwards.run("tell the thread the task is done", () =>
    deliverOutbox(deps, { taskId: found.id }),
  );
  return outcome;
}

/**
 * Of an order's tasks the reader may read (newest first), the newest a person holds: a later
 * question about the same order, answered by an agent, does not hide the work a person took over.
 */
async function heldOrNewest(
  deps: RuntimeDeps,
  readable: readonly string[],
): Promise<TaskRow | undefined> {
  let newest: TaskRow | undefined;
  for (const id of readable) {
    const task = await findTask(deps.db, id);
    newest ??= task;
    if (task?.owner_kind === "human" && task.status === "waiting_human") return task;
  }
  return newest;
}

async function refusalFor(
  deps: RuntimeDeps,
  task: TaskRow,
  userId: string,
): Promise<CloseOutcome | undefined> {
  const owner = { kind: task.owner_kind, id: task.owner_id };
  if (task.status === "done" || task.status === "failed")
    return { outcome: "already_closed", status: task.status };
  if (task.owner_kind !== "human" || task.status !== "waiting_human")
    return { outcome: "not_with_a_person", owner };
  if (await hasOpenEscalation(deps.db, task.id)) return { outcome: "escalation_open" };
  if (await isAmong(deps, task.owner_id.split(","), userId)) return undefined;
  await audit(deps.db, {
    taskId: task.id,
    actor: { kind: "human", id: userId },
    kind: "close_refused",
    data: { owner },
  });
  return { outcome: "not_owner", owner };
}
