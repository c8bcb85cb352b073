// Read-only views of a scenario's effects: rows in Postgres, calls the Slack emulator recorded,
// requests the model server received. Tests assert on these, never on transcripts.
import { sql } from "kysely";
import type { Db } from "../../src/db/database.ts";
import type { TaskRow } from "../../src/db/schema.ts";
import { createLogger } from "../../src/log.ts";
import { CHANNEL, type Harness } from "./harness.ts";
import type { ChatMessage, ChatRequest } from "./model-server.ts";
import type { SlackCall, SlackEmulator } from "./slack-emulator.ts";

export async function taskInThread(db: Db, threadTs: string): Promise<TaskRow | undefined> {
  return db.selectFrom("tasks").selectAll().where("thread_ts", "=", threadTs).executeTakeFirst();
}

export async function tasksInThread(db: Db, threadTs: string): Promise<TaskRow[]> {
  return db.selectFrom("tasks").selectAll().where("thread_ts", "=", threadTs).execute();
}

/** Polls-friendly: the task of the thread once it has one of `statuses`. */
export async function taskWithStatus(
  db: Db,
  threadTs: string,
  ...statuses: string[]
): Promise<TaskRow | undefined> {
  const task = await taskInThread(db, threadTs);
  return task && statuses.includes(task.status) ? task : undefined;
}

export function postsInThread(slack: SlackEmulator, threadTs: string): SlackCall[] {
  return slack
    .callsTo("chat.postMessage")
    .filter((c) => !c.failed && c.args.channel === CHANNEL && c.args.thread_ts === threadTs);
}

/** The audit events of one kind for a task, oldest first. */
export { auditKinds as auditEvents } from "./scripts-humans.ts";

export function toolMessages(request: Pick<ChatRequest, "messages">): ChatMessage[] {
  return request.messages.filter((m) => m.role === "tool");
}

export function textOf(message: ChatMessage): string {
  const { content } = message;
  if (typeof content === "string") return content;
  return (content ?? []).map((p) => p.text ?? "").join("");
}

/** The first user message of a request: the task's request, which tests use to route scripts. */
export function requestText(request: Pick<ChatRequest, "messages">): string {
  const first = request.messages.find((m) => m.role === "user");
  return first ? textOf(first) : "";
}

/** The outbox row a Slack message was delivered for, from the metadata Baton attaches. */
export function outboxIdOf(call: SlackCall): string | undefined {
  const metadata = call.args.metadata as { event_payload?: { outbox_id?: unknown } } | undefined;
  const id = metadata?.event_payload?.outbox_id;
  return id === undefined ? undefined : String(id);
}

/**
 * The thread's posts once there are at least `count`. A task's status commits before its
 * outbox is delivered to Slack, so a finished task's answer may still be on its way.
 */
export function postsWhenAtLeast(
  h: { slack: SlackEmulator; until: Harness["until"] },
  threadTs: string,
  count: number,
): Promise<SlackCall[]> {
  return h.until(`${count} posts in the thread`, async () => {
    const posts = postsInThread(h.slack, threadTs);
    return posts.length >= count ? posts : undefined;
  });
}

type CardWatch = { db: { db: Db }; until: Harness["until"] };

/** The approval once its card is in Slack (its card_ts saved); `what` names it if time runs out. */
export function waitForApprovalCard(h: CardWatch, what = "the approval card") {
  return h.until(what, async () => {
    const row = await h.db.db.selectFrom("approvals").selectAll().executeTakeFirst();
    return row?.card_ts ? row : undefined;
  });
}

/** The escalation once its card is in Slack (its card_ts saved); `what` names it if time runs out. */
export function waitForEscalationCard(h: CardWatch, what = "the escalation card") {
  return h.until(what, async () => {
    const row = await h.db.db.selectFrom("escalations").selectAll().executeTakeFirst();
    return row?.card_ts ? row : undefined;
  });
}

/** A task's outbox rows, oldest first: each one's status, and whether it waits out a retry delay. */
export function outboxWaits(db: Db, taskId: string) {
  return db
    .selectFrom("slack_outbox")
    .select([
      "status",
      sql<boolean>`coalesce(next_attempt_at > clock_timestamp(), false)`.as("waiting"),
    ])
    .where("task_id", "=", taskId)
    .orderBy("id")
    .execute();
}

/** A logger that keeps its warnings and errors, as JSON lines, for a test to read. */
export function warnings() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    level: "warn",
    destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
  });
  return { lines, log };
}
