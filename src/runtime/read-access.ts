import { agentActivity } from "../db/agent-activity.repository.ts";
import {
  type ProcessedCall,
  type ResolvedRef,
  resolveTaskRef,
  toolCallsOf,
} from "../db/reports.repository.ts";
import { peopleOnTasks, type TaskPeople } from "../db/task-people.repository.ts";
import { NotFoundError, PolicyDeniedError } from "../errors.ts";
import { type AuditReport, auditStory, notAReference } from "./audit-story.ts";
import type { RuntimeDeps } from "./deps.ts";

/**
 * Who may read a task from Slack (`/baton status|audit|who|done` and the audit pager). A task's
 * story holds customer text, tool arguments and amounts, and its thread may be in a private
 * channel. The operator's CLI reads everything and does not come through here.
 *
 * A person may read a task when any of these holds:
 * 1. they ask in the task's own channel, or in a lane channel that owns or owned it: Slack lets
 *    only a channel's members type there;
 * 2. they asked for the task;
 * 3. they are or were a human on it: an owner, an approver asked, a decider (or in such a group);
 * 4. they are a supervisor (`policies.supervisors` of the agents file).
 */
export interface Reader {
  userId: string;
  /** Where the command or click came from; undefined when Slack did not say. */
  channelId: string | undefined;
}

type ReadDeps = Pick<RuntimeDeps, "db" | "chat" | "agents">;

/**
 * A reference that names no task and one the reader may not read get the same words: neither what
 * the task is nor where its thread is, nor even that there is one (an order number, say).
 */
const NO_READABLE_TASK =
  "No task you can read here matches that reference. Give a task id, an order id or a link to its thread; if the thread is in another channel, run the command there, or ask its requester or a supervisor.";
/** For a task id: the asker gave one, so the words do not ask for one. */
const NO_READABLE_TASK_WITH_ID =
  "No task you can read here has that id. If its thread is in another channel, run the command there, or ask its requester or a supervisor.";

export function noReadableTask(byId = false): NotFoundError {
  return new NotFoundError(byId ? NO_READABLE_TASK_WITH_ID : NO_READABLE_TASK);
}

const GROUP_ID = /^S[A-Z0-9]+$/;

/** The ids among `taskIds` (order kept) that the reader may read. */
export async function readableTaskIds(
  deps: ReadDeps,
  taskIds: readonly string[],
  reader: Reader,
): Promise<string[]> {
  const tasks = await peopleOnTasks(deps.db, taskIds);
  const plainly = (t: TaskPeople) =>
    t.channelId === reader.channelId ||
    t.people.some((p) => p === reader.userId || p === reader.channelId);
  const throughSlack = await readableThroughSlack(
    deps,
    reader.userId,
    tasks.filter((t) => !plainly(t)),
  );
  const ids = new Set([...tasks.filter(plainly), ...throughSlack].map((t) => t.id));
  return taskIds.filter((id) => ids.has(id));
}

/** Supervisors and group members need Slack's word: asked only about what the database left open. */
async function readableThroughSlack(
  deps: ReadDeps,
  userId: string,
  tasks: TaskPeople[],
): Promise<TaskPeople[]> {
  if (tasks.length === 0) return [];
  if (await isSupervisor(deps, userId)) return tasks;
  const groups = await groupsOf(deps, userId, groupIdsOn(tasks));
  return tasks.filter((t) => t.people.some((p) => groups.has(p)));
}

/**
 * The readable ones among the tasks `resolved` names; refuses, naming nothing, when there are
 * none. `resolved` is undefined for a reference of no shape Baton knows.
 */
export async function requireReadable(
  deps: ReadDeps,
  resolved: ResolvedRef | undefined,
  reader: Reader,
): Promise<[string, ...string[]]> {
  const [first, ...rest] = await readableTaskIds(deps, resolved?.taskIds ?? [], reader);
  if (!first) throw noReadableTask(resolved?.ref.kind === "task");
  return [first, ...rest];
}

/** The tasks `ref` names, newest first, and the readable ones among them (at least one). */
async function resolveReadable(deps: ReadDeps, ref: string, reader: Reader) {
  const resolved = await resolveTaskRef(deps.db, ref);
  if (!resolved) throw notAReference(ref);
  const readable = await requireReadable(deps, resolved, reader);
  return { all: resolved.taskIds, readable };
}

/** `/baton status`: the newest task of `ref` the reader may read. */
export async function newestReadableTask(
  deps: ReadDeps,
  ref: string,
  reader: Reader,
): Promise<string> {
  return (await resolveReadable(deps, ref, reader)).readable[0];
}

/**
 * `/baton audit`: the story of the newest task of `ref` the reader may read, and the other tasks
 * of `ref` they may read (an order's question, then its return), newest first, to ask for next.
 */
export async function readableStory(
  deps: ReadDeps,
  ref: string,
  reader: Reader,
): Promise<AuditReport & { otherTaskIds: string[] }> {
  const [newest, ...others] = (await resolveReadable(deps, ref, reader)).readable;
  return { ...(await auditStory(deps, newest)), otherTaskIds: others };
}

/**
 * `/baton who`: the calls of the readable tasks of `ref`. An order can span tasks from several
 * channels; the others are only counted, whatever their calls, so the count says nothing of them.
 */
export async function readableCalls(
  deps: ReadDeps,
  ref: string,
  reader: Reader,
  tool?: string,
): Promise<{ calls: ProcessedCall[]; withheld: number }> {
  const { all, readable } = await resolveReadable(deps, ref, reader);
  return {
    calls: await toolCallsOf(deps.db, readable, tool),
    withheld: all.length - readable.length,
  };
}

/**
 * `/baton agents`: each agent's activity over the last `days`. The records (spend, what people
 * rejected) are for the people who supervise the agents, when the agents file names any; a small
 * team that names none sees them all.
 */
export async function agentRecords(deps: ReadDeps, userId: string, days: number) {
  if (deps.agents.file.policies.supervisors && !(await isSupervisor(deps, userId)))
    throw new PolicyDeniedError(
      "Only the agents' supervisors (policies.supervisors in the agents file) see their records.",
    );
  const agents = deps.agents.all();
  const ids = agents.map((a) => a.id);
  return { agents, activity: await agentActivity(deps.db, ids, days * 86_400_000) };
}

async function isSupervisor(deps: ReadDeps, userId: string): Promise<boolean> {
  const supervisors = deps.agents.file.policies.supervisors;
  if (!supervisors) return false;
  if (supervisors.users.includes(userId)) return true;
  return (await groupsOf(deps, userId, supervisors.groups)).size > 0;
}

function groupIdsOn(tasks: readonly TaskPeople[]): Set<string> {
  return new Set(tasks.flatMap((t) => t.people.filter((p) => GROUP_ID.test(p))));
}

/** The groups among `groupIds` the user is in; the chat surface caches each group's members. */
async function groupsOf(
  deps: ReadDeps,
  userId: string,
  groupIds: Iterable<string>,
): Promise<Set<string>> {
  const member = new Set<string>();
  for (const group of groupIds)
    if ((await deps.chat.groupMembers(group)).includes(userId)) member.add(group);
  return member;
}
