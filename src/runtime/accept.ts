import { isConnectionLost, type Tx } from "../db/database.ts";
import { receiveMessage, recordRefused } from "../db/events.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import { acceptReply, type ReplyFollowUps } from "./accept-reply.ts";
import {
  overTaskLimit,
  type RunStart,
  reserveStart,
  runHere,
  type Start,
  startNewTask,
} from "./accept-start.ts";
import type { RuntimeDeps } from "./deps.ts";
import { giveUpStart, wakeIfMissed } from "./missed-runs.ts";
import { isBlank, namesOnly } from "./named-agent.ts";
import { deliverOutbox } from "./outbox.ts";
import { tellWaitingOnDecision } from "./waiting-replies.ts";

export interface IncomingMessage {
  eventId: string;
  channel: string;
  ts: string;
  threadTs: string | undefined;
  user: string;
  /** The text with the bot's own mention removed. */
  text: string;
  /** A mention starts a task (or continues the thread's); a plain reply only continues one. */
  mentioned: boolean;
  /** Slack's count of earlier deliveries of this event: undefined or 0 on the first. */
  retryNum: number | undefined;
  /**
   * Set when the message is a person's edit of `ts` (Slack's `message_changed`): the edit's own
   * ts, which keys it, so each edit is read once. An edit never starts a task.
   */
  editTs?: string;
  /**
   * A reply, in a direct message, under a message Baton posted there (a page, a digest): not a
   * question for an agent, unless the thread is a task's or a card's. Nothing starts from it.
   */
  underBotPost?: boolean;
}

/**
 * Refused, and the person is told once (its keys are kept, so its twin event and Slack's retries
 * are duplicates), nothing else kept: "rate_limited", the person started as many tasks as
 * `new_tasks_per_person` allows; "empty_mention", a mention with nothing after it;
 * "mention_in_edit", an edit outside any task mentions Baton (Slack sends no `app_mention` for it);
 * "reply_to_notice", a reply in a direct message under a post of Baton's (see `underBotPost`).
 */
type RefusedOutcome = "rate_limited" | "empty_mention" | "mention_in_edit" | "reply_to_notice";

export type AcceptOutcome = "started" | "continued" | "duplicate" | "ignored" | RefusedOutcome;

class Duplicate extends Error {
  readonly agentTask: string | undefined;
  constructor(agentTask?: string) {
    super("duplicate");
    this.agentTask = agentTask;
  }
}
class Refused extends Error {
  readonly outcome: RefusedOutcome;
  constructor(outcome: RefusedOutcome) {
    super(outcome);
    this.outcome = outcome;
  }
}

/**
 * Accepting a message means storing it and queueing its work in one transaction, before Slack
 * is acknowledged: once acknowledged, nothing is lost, and a redelivery does nothing.
 */
export async function acceptMessage(
  deps: RuntimeDeps,
  message: IncomingMessage,
): Promise<AcceptOutcome> {
  const keys = messageKeys(message);
  // A mention with no question has nothing for an agent to start on (nor does "@Baton billing:"
  // start anything, see `receive`; in a task's thread, where it may answer the agent, it is a reply).
  if (isBlank(message.text))
    return message.mentioned && !message.editTs ? refused(deps, keys, "empty_mention") : "ignored";
  const start = reserveStart(deps);
  try {
    const accepted = await deps.db
      .transaction()
      .execute((tx) => acceptIn(deps, tx, message, keys, start));
    await afterCommit(deps, message, start, accepted);
    return accepted.outcome;
  } catch (error) {
    deps.runs.giveBack(start.id);
    return notAccepted(deps, message, keys, start, error);
  }
}

/** What the transaction decided, and what it leaves to do once it commits. */
interface Accepted extends ReplyFollowUps {
  outcome: "started" | "continued" | "ignored";
  /** The first run of a task started here. */
  run?: RunStart;
}

/** The accept's transaction. A refusal or a duplicate is thrown, so it rolls back. */
async function acceptIn(
  deps: RuntimeDeps,
  tx: Tx,
  message: IncomingMessage,
  keys: readonly string[],
  start: Start,
): Promise<Accepted> {
  const task = await receive(deps, tx, message, keys, start.id);
  if (task === "ignored") return { outcome: "ignored" };
  if (task === "new") {
    // Nothing of it is kept but its keys (`refused`): a new message may start once the window
    // moves on.
    if (await overTaskLimit(deps, tx, message.user)) throw new Refused("rate_limited");
    return { outcome: "started", run: await startNewTask(deps, tx, message, start) };
  }
  return { outcome: "continued", ...(await acceptReply(deps, tx, task, message)) };
}

/** Stores the message's keys and tells what it is: a reply to its thread's task, a start, chatter. */
async function receive(
  deps: RuntimeDeps,
  tx: Tx,
  message: IncomingMessage,
  keys: readonly string[],
  newTaskId: string,
): Promise<TaskRow | "new" | "ignored"> {
  const { task, fresh } = await receiveMessage(tx, {
    channel: message.channel,
    threadTs: message.threadTs ?? message.ts,
    keys,
    newTaskId,
    starts: message.mentioned && !message.editTs,
  });
  if (!task && message.mentioned && message.editTs) throw new Refused("mention_in_edit");
  if (!task && message.mentioned && namesOnly(deps, message.text))
    throw new Refused("empty_mention");
  if (!task && message.underBotPost) throw new Refused("reply_to_notice");
  // Chatter in threads that are not tasks is not Baton's: nothing of it is stored.
  if (!task && !message.mentioned) return "ignored";
  if (!fresh) throw new Duplicate(task?.owner_kind === "agent" ? task.id : undefined);
  return task ?? "new";
}

/** Only once the message is stored: no run starts, and no one is told, of one that rolled back. */
async function afterCommit(
  deps: RuntimeDeps,
  message: IncomingMessage,
  start: Start,
  accepted: Accepted,
): Promise<void> {
  const { waitedOn, waitNote, passedOn, run } = accepted;
  if (waitedOn) await wakeIfMissed(deps, waitedOn);
  if (waitNote) tellWaitingOnDecision(deps, message, waitNote);
  if (passedOn)
    deps.afterwards.run("pass a reply on to its task's card", () =>
      deliverOutbox(deps, { taskId: passedOn }),
    );
  // Counted after the commit, so a rolled-back start is never counted.
  if (accepted.outcome === "started") deps.metrics.tasksStarted.inc();
  if (run) deps.runs.start(start.id, () => runHere(deps, start.id, run));
  else deps.runs.giveBack(start.id);
}

/** What a thrown accept comes to: a duplicate, a refusal told once, or the error for Slack to retry. */
async function notAccepted(
  deps: RuntimeDeps,
  message: IncomingMessage,
  keys: readonly string[],
  start: Start,
  error: unknown,
): Promise<AcceptOutcome> {
  if (error instanceof Duplicate) {
    // Slack sends again what it saw no answer to: the first accept may have died after its
    // commit, before its wake-up check or its run, so a retry checks; a reply in a thread too,
    // as before retries were told apart. Not a new task's twin `message` event, a duplicate of
    // every mention: its check costs a read, and with no run slot free a locked transaction,
    // when the process is busiest. Over Socket Mode, a first delivery counts 0.
    const retried = (message.retryNum ?? 0) > 0;
    if (error.agentTask && (retried || message.threadTs)) await wakeIfMissed(deps, error.agentTask);
    return "duplicate";
  }
  if (error instanceof Refused) return refused(deps, keys, error.outcome);
  // The connection may have dropped with only the COMMIT's answer lost: the task is written then,
  // leased to a run that will not start. Given up before Slack hears of the failure, so its retry
  // finds the task free and wakes it, rather than leave it to the job, due when the lease ends.
  if (start.leasedTo && isConnectionLost(error)) await giveUpStart(deps, start.id, start.leasedTo);
  throw error;
}

/**
 * The keys a message arrives by: its event id, and the message itself, since a mention arrives both
 * as `app_mention` and as `message`. An edit is keyed by its own ts: each edit is read once.
 */
function messageKeys(message: IncomingMessage): string[] {
  const { channel, ts, editTs } = message;
  return [
    `event:${message.eventId}`,
    editTs ? `edit:${channel}:${ts}:${editTs}` : `message:${channel}:${ts}`,
  ];
}

/** Told once: the mention's twin `message` event, and Slack's retries, are duplicates then. */
async function refused(
  deps: RuntimeDeps,
  keys: readonly string[],
  outcome: RefusedOutcome,
): Promise<AcceptOutcome> {
  return (await recordRefused(deps.db, keys)) ? outcome : "duplicate";
}
