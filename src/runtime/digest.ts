import type { AgentsFile } from "../config/agents-schema.ts";
import { type DigestInput, isDigestEmpty } from "../core/digest.ts";
import type { ChatIntent, ChatSurface } from "../core/ports.ts";
import { askersOf } from "../db/approval-askers.repository.ts";
import type { Db, Tx } from "../db/database.ts";
import { enqueueOutbox, type OutboxMessage } from "../db/outbox.repository.ts";
import { type RefusedDm, refusedDigestDms } from "../db/refused-dms.repository.ts";
import {
  claimScheduledRun,
  databaseNow,
  failedTasks,
  finishScheduledRun,
  previousRunAt,
  staleApprovals,
  staleTasks,
} from "../db/reports.repository.ts";
import { cardsOfTasks } from "../db/task-cards.repository.ts";
import { peopleOnTasks } from "../db/task-people.repository.ts";
import type { Logger } from "../log.ts";
import { isDirectMessage, openPlace } from "./decision-place.ts";
import {
  type Digest,
  failedTaskItem,
  type Owned,
  staleApprovalItem,
  staleTaskItem,
  type TaskLinker,
  withGroupMembers,
} from "./digest-items.ts";
import { deliverOutbox } from "./outbox.ts";

export interface DigestDeps {
  db: Db;
  log: Logger;
  agentsFile: AgentsFile;
  /** Without it the digest waits in the outbox for the app's deliverer. */
  chat?: ChatSurface;
  /** Opens a task's thread (see ChatSurface.threadLink). */
  threadLink: ChatSurface["threadLink"];
  /** This process's stamp on the outbox rows it writes (see RuntimeDeps). */
  writer?: string;
}

export interface DigestResult {
  /** False when another replica had already claimed this firing: nothing was sent. */
  claimed: boolean;
  staleTasks: number;
  staleApprovals: number;
  failedTasks: number;
  channelMessages: number;
  directMessages: number;
  /** DMs left out: Slack refused the person's last one for good (see refusedDigestDms). */
  refusedDirectMessages: number;
  delivered: number;
}

export const DIGEST_JOB = "digest";
// Each message lists 200 of a kind at most, and says when there are more.
const LIST_LIMIT = 200;
// Owners' DMs are cut from the lists read: past the channel's 200 oldest, newly stale work must
// still reach its owner. Each reads one more row than it keeps, to tell when there are more.
const READ_LIMIT = 5_000;
const FIRST_FAILURE_WINDOW_MS = 86_400_000;
const DELIVERY_ROUNDS = 20;

/**
 * One digest per firing, however many replicas fire: the firing is claimed, read and queued in one
 * transaction, so a second claimer waits on the row, then finds it taken (or takes over if the first
 * rolled back). Delivery happens after commit, through the outbox.
 */
export async function runDigest(
  deps: DigestDeps,
  fireAt: Date,
  instanceId: string,
): Promise<DigestResult> {
  const log = deps.log.child({ job: DIGEST_JOB, fireAt: fireAt.toISOString(), instanceId });
  const result = await deps.db.transaction().execute(async (tx) => {
    if (!(await claimScheduledRun(tx, DIGEST_JOB, fireAt, instanceId))) return undefined;
    const digest = await withGroupMembers(deps, log, await readDigest(tx, deps, fireAt));
    const { messages, refused } = await withoutRefusedDms(
      tx,
      digestMessages(deps.agentsFile.digest.channel, digest),
    );
    await enqueueOutbox(tx, messages);
    await finishScheduledRun(tx, DIGEST_JOB, fireAt);
    return { digest, messages, refused };
  });
  if (!result) {
    log.debug("digest firing already claimed by another instance");
    return { ...EMPTY, claimed: false };
  }
  const { digest, messages, refused } = result;
  if (refused.length > 0)
    log.warn(
      { refused },
      "digest DMs left out: Slack refused each person's last one for good (deactivated, not found, or a bot); each is tried again a week after",
    );
  const delivered = await deliver(deps, log);
  const counts = {
    claimed: true,
    staleTasks: digest.staleTasks.length,
    staleApprovals: digest.staleApprovals.length,
    failedTasks: digest.failedTasks.length,
    channelMessages: messages.filter((m) => m.intent.kind === "digest").length,
    directMessages: messages.filter((m) => m.intent.kind === "digest_dm").length,
    refusedDirectMessages: refused.length,
    delivered,
  };
  log.info(counts, "digest queued");
  return counts;
}

const EMPTY: DigestResult = {
  claimed: false,
  staleTasks: 0,
  staleApprovals: 0,
  failedTasks: 0,
  channelMessages: 0,
  directMessages: 0,
  refusedDirectMessages: 0,
  delivered: 0,
};

async function readDigest(tx: Tx, deps: DigestDeps, fireAt: Date): Promise<Digest> {
  const config = deps.agentsFile.digest;
  // The database's clock stamped the rows judged: a replica's own may be off.
  const now = await databaseNow(tx);
  const since =
    (await previousRunAt(tx, DIGEST_JOB, fireAt)) ??
    new Date(now.getTime() - FIRST_FAILURE_WINDOW_MS);
  const [tasks, approvals, failed] = await Promise.all([
    staleTasks(tx, new Date(now.getTime() - config.stale_after), READ_LIMIT + 1),
    staleApprovals(tx, new Date(now.getTime() - config.approval_stale_after), READ_LIMIT + 1),
    failedTasks(tx, since, READ_LIMIT + 1),
  ]);
  const agentName = (id: string) => deps.agentsFile.agents.find((a) => a.id === id)?.name ?? id;
  const link = (row: { channel_id: string; thread_ts: string }) =>
    deps.threadLink(row.channel_id, row.thread_ts);
  const kept = {
    tasks: tasks.slice(0, READ_LIMIT),
    approvals: approvals.slice(0, READ_LIMIT),
    failed: failed.slice(0, READ_LIMIT),
  };
  const cut: Cut = {
    staleTasks: tasks.length > READ_LIMIT,
    staleApprovals: approvals.length > READ_LIMIT,
    failedTasks: failed.length > READ_LIMIT,
  };
  const taskLink = await taskLinker(tx, deps, [...kept.tasks, ...kept.failed]);
  const openHere = await readableIn(tx, config.channel, [
    ...kept.tasks.map((t) => t.id),
    ...kept.approvals.map((a) => a.task_id),
    ...kept.failed.map((f) => f.id),
  ]);
  // An approval someone asked for is not theirs to decide: it is not put before them as such.
  const askers = await askersOf(
    tx,
    kept.approvals.map((a) => a.id),
  );
  const digest = {
    staleTasks: kept.tasks.map((t) => staleTaskItem(t, agentName, taskLink, openHere.has(t.id))),
    staleApprovals: kept.approvals.map((a) =>
      staleApprovalItem(a, agentName, link, openHere.has(a.task_id), askers.get(a.id)),
    ),
    failedTasks: kept.failed.map((f) => failedTaskItem(f, now, taskLink, openHere.has(f.id))),
  };
  const shared = <T>(list: Owned<T>[]) => list.map((o) => o.shared);
  const input = listed(
    {
      audience: "channel",
      asOf: now.toISOString(),
      staleAfterMs: config.stale_after,
      approvalStaleAfterMs: config.approval_stale_after,
      staleTasks: shared(digest.staleTasks),
      staleApprovals: shared(digest.staleApprovals),
      failedTasks: shared(digest.failedTasks),
    },
    cut,
  );
  return { input, cut, ...digest };
}

type Cut = Digest["cut"];

/** The first LIST_LIMIT of each list, which lists hold more, and how many they hold. */
function listed(input: DigestInput, cut: Cut): DigestInput {
  const lists = ["staleTasks", "staleApprovals", "failedTasks"] as const;
  const capped = lists.filter((l) => input[l].length > LIST_LIMIT || cut[l]);
  return {
    ...input,
    staleTasks: input.staleTasks.slice(0, LIST_LIMIT),
    staleApprovals: input.staleApprovals.slice(0, LIST_LIMIT),
    failedTasks: input.failedTasks.slice(0, LIST_LIMIT),
    capped: Object.fromEntries(lists.map((l) => [l, capped.includes(l)])),
    totals: Object.fromEntries(capped.map((l) => [l, { count: input[l].length, atLeast: cut[l] }])),
  };
}

/** Links to the tasks listed: a direct message's to its card, as no reader can open the DM. */
async function taskLinker(
  tx: Tx,
  deps: DigestDeps,
  tasks: { id: string; channel_id: string }[],
): Promise<TaskLinker> {
  const inDirectMessages = tasks.filter((t) => isDirectMessage(t.channel_id)).map((t) => t.id);
  const cards = await cardsOfTasks(tx, inDirectMessages);
  return (task) => {
    const place = openPlace(task, cards.get(task.id));
    return deps.threadLink(place.channel, place.ts);
  };
}

/** The tasks among `taskIds` whose words may be read in `channel`. */
async function readableIn(
  tx: Tx,
  channel: string | undefined,
  taskIds: string[],
): Promise<Set<string>> {
  if (!channel) return new Set();
  const tasks = await peopleOnTasks(tx, [...new Set(taskIds)]);
  return new Set(
    tasks.filter((t) => t.channelId === channel || t.people.includes(channel)).map((t) => t.id),
  );
}

/**
 * One post to the channel (an "all clear" when empty), one to each lane's channel that owns work
 * (with its words: its members may read it), and a DM to each person with their items.
 */
function digestMessages(channel: string | undefined, digest: Digest): OutboxMessage[] {
  const messages: OutboxMessage[] = [];
  if (channel) messages.push(outbox({ kind: "digest", channel, digest: digest.input }));
  const all = [...digest.staleTasks, ...digest.staleApprovals, ...digest.failedTasks];
  // The digest channel lists a lane's work already when it is that lane's channel.
  const lanes = new Set(all.flatMap((o) => o.channels ?? []).filter((c) => c !== channel));
  for (const lane of [...lanes].sort()) {
    const own = ownDigest(digest, "lane", (o) => o.channels?.includes(lane) ?? false);
    if (!isDigestEmpty(own)) messages.push(outbox({ kind: "digest", channel: lane, digest: own }));
  }
  const users = new Set(all.flatMap((o) => o.users));
  for (const user of [...users].sort()) {
    const own = ownDigest(digest, "owner", (o) => o.users.includes(user));
    if (!isDigestEmpty(own)) messages.push(outbox({ kind: "digest_dm", user, digest: own }));
  }
  return messages;
}

function ownDigest(
  digest: Digest,
  audience: DigestInput["audience"],
  isTheirs: (o: Owned<unknown>) => boolean,
): DigestInput {
  const mine = <T>(list: Owned<T>[]) => list.filter(isTheirs).map((o) => o.item);
  return listed(
    {
      ...digest.input,
      audience,
      staleTasks: mine(digest.staleTasks),
      staleApprovals: mine(digest.staleApprovals),
      failedTasks: mine(digest.failedTasks),
    },
    digest.cut,
  );
}

/**
 * Leaves out the DMs to people Slack refused the last one for good: queued again, each would be
 * refused again, every day, for ever.
 */
async function withoutRefusedDms(
  tx: Tx,
  messages: OutboxMessage[],
): Promise<{ messages: OutboxMessage[]; refused: RefusedDm[] }> {
  const dmTo = (m: OutboxMessage) => (m.intent.kind === "digest_dm" ? m.intent.user : undefined);
  const users = messages.flatMap((m) => dmTo(m) ?? []);
  const refused = await refusedDigestDms(tx, users);
  return {
    messages: messages.filter((m) => {
      const user = dmTo(m);
      return user === undefined || !refused.has(user);
    }),
    refused: [...refused.values()],
  };
}

function outbox(intent: ChatIntent): OutboxMessage {
  return { taskId: null, intent };
}

/** Best effort: what is not delivered now stays in the outbox for the app's deliverer. */
async function deliver(deps: DigestDeps, log: Logger): Promise<number> {
  if (!deps.chat) return 0;
  let total = 0;
  try {
    for (let round = 0; round < DELIVERY_ROUNDS; round++) {
      const sent = await deliverOutbox({
        db: deps.db,
        chat: deps.chat,
        log,
        ...(deps.writer && { writer: deps.writer }),
      });
      total += sent;
      if (sent === 0) break;
    }
  } catch (error) {
    log.warn({ err: error }, "digest delivery deferred to the outbox deliverer");
  }
  return total;
}
