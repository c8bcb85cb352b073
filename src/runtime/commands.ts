import { ownershipHistory } from "../db/ledger.repository.ts";
import { findTask, findTaskByThread } from "../db/tasks.repository.ts";
import type { RuntimeDeps } from "./deps.ts";

/** Finds a task from what a person types: a task id, an order id or a thread link. */
export async function findTaskRef(deps: RuntimeDeps, ref: string) {
  const text = ref.trim().replace(/^<|>$/g, "");
  if (/^[0-9a-f-]{36}$/i.test(text)) return findTask(deps.db, text);
  const link = /archives\/([A-Z0-9]+)\/p(\d{10})(\d{6})/.exec(text);
  if (link) return findTaskByThread(deps.db, link[1] as string, `${link[2]}.${link[3]}`);
  if (/^\d{1,12}$/.test(text)) {
    return deps.db
      .selectFrom("tasks")
      .selectAll()
      .where((eb) => eb(eb.ref("facts", "->>").key("order_id"), "=", text))
      .orderBy("created_at", "desc")
      .executeTakeFirst();
  }
  return undefined;
}

const OWNER = (kind: string, id: string, deps: RuntimeDeps) =>
  kind === "agent"
    ? (deps.agents.get(id)?.name ?? id)
    : id
        .split(",")
        .map((p) => (p.startsWith("S") ? `<!subteam^${p}>` : `<@${p}>`))
        .join(", ");

/** `/baton status <ref>`: where the task is, who owns it, and how it got there. */
export async function taskStatus(deps: RuntimeDeps, ref: string): Promise<string> {
  const task = await findTaskRef(deps, ref);
  if (!task)
    return `I couldn't find a task for "${ref.slice(0, 100)}". Try a task id, an order number or a thread link.`;
  const history = await ownershipHistory(deps.db, task.id);
  const lines = history.map(
    (h) =>
      `• ${h.kind.replaceAll("_", " ")}: ${OWNER(h.from_kind, h.from_id, deps)} → ${OWNER(h.to_kind, h.to_id, deps)}`,
  );
  return [
    `*${task.title}* — ${task.status.replace("_", " ")}, owned by ${OWNER(task.owner_kind, task.owner_id, deps)}`,
    `Task \`${task.id}\` · ${task.hop_count} handoffs · ${task.tokens} tokens · ${Number(task.cost_usd).toFixed(4)} USD`,
    ...(task.failure_reason ? [`Stopped because ${task.failure_reason}.`] : []),
    ...lines.slice(-20),
  ].join("\n");
}
