import { isAgentHandoff, ownershipHistory } from "../db/ledger.repository.ts";
import { findTask } from "../db/tasks.repository.ts";
import type { RuntimeDeps } from "../runtime/deps.ts";
import { newestReadableTask, noReadableTask, type Reader } from "../runtime/read-access.ts";
import { clip, mentionEach, truncate } from "./mrkdwn.ts";
import { typedText } from "./typed-text.ts";
import { taskStatusWords } from "./words.ts";

/**
 * The whole answer at most: Slack takes 40,000 characters of text but advises 4,000, and a
 * status is read at a glance.
 */
const STATUS_MAX = 4_000;

/**
 * An owner as people read it, in mrkdwn: an agent's name (escaped, as the agents file's names are
 * wherever Slack shows them), or Slack mentions of people, groups and the channel whose members
 * own an escalation (never its bare ID).
 */
export function ownerName(deps: RuntimeDeps, kind: string, id: string): string {
  return kind === "agent" ? clip(deps.agents.get(id)?.name ?? id, 80) : mentionEach(id);
}

/**
 * `/baton status <ref>`: where the task is, who owns it, and how it got there. Of an order's
 * tasks, the newest the reader may read (the same NotFoundError whether none matches or none is theirs).
 * What the requester wants comes first, in words: the task, where it is, why it stopped. The id,
 * handoffs, tokens and cost follow: the id is what `/baton audit|done` and `npm run audit` take, and
 * the counts are what the caps (`tokens_per_task`, `usd_per_task`) are checked against.
 */
export async function taskStatus(deps: RuntimeDeps, ref: string, reader: Reader): Promise<string> {
  const task = await findTask(deps.db, await newestReadableTask(deps, ref, reader));
  if (!task) throw noReadableTask();
  const history = await ownershipHistory(deps.db, task.id);
  const lines = history.map(
    (h) =>
      `• ${h.kind.replaceAll("_", " ")}: ${ownerName(deps, h.from_kind, h.from_id)} → ${ownerName(deps, h.to_kind, h.to_id)}`,
  );
  const answer = [
    `*${typedText(task.title, 200)}*: ${taskStatusWords(task.status)}, owned by ${ownerName(deps, task.owner_kind, task.owner_id)}`,
    ...(task.failure_reason ? [`Stopped because ${clip(task.failure_reason, 2_000)}.`] : []),
    `Task \`${task.id}\` · ${history.filter(isAgentHandoff).length} handoffs · ${task.tokens.toLocaleString("en-US")} tokens · ${Number(task.cost_usd).toFixed(4)} USD`,
    ...earlierChanges(lines.length, task.id),
    ...lines.slice(-HISTORY_SHOWN),
  ].join("\n");
  return truncate(answer, STATUS_MAX);
}

/** A status is read for the latest changes of owner; the others are counted, not dropped unsaid. */
const HISTORY_SHOWN = 20;

function earlierChanges(changes: number, taskId: string): string[] {
  const left = changes - HISTORY_SHOWN;
  if (left <= 0) return [];
  const noun = left === 1 ? "change" : "changes";
  return [`${left} earlier ${noun} of owner not shown: \`/baton audit ${taskId}\` tells them all`];
}
