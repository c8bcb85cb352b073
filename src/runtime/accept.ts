import { randomUUID } from "node:crypto";
import { taskTitle } from "../core/context.ts";
import { isConnectionLost, type Tx } from "../db/database.ts";
import { receiveMessage, recordRefused } from "../db/events.repository.ts";
import type { Claim } from "../db/lease.repository.ts";
import { lockRateLimit, tasksStartedWithin } from "../db/rate-limits.repository.ts";
import { lockTask, startTask } from "../db/tasks.repository.ts";
import { insertInput } from "../db/turn-reads.repository.ts";
import type { RuntimeDeps } from "./deps.ts";
import { passOnReply } from "./direct-replies.ts";
import { recordFailedTry } from "./failed-tries.ts";
import { handOnNamed, handToAgent } from "./hand-on.ts";
import { giveUpStart, wakeIfMissed } from "./missed-runs.ts";
import { chooseAgent, isBlank, namesOnly } from "./named-agent.ts";
import { deliverOutbox } from "./outbox.ts";
import {
  agentTaskReopened,
  reopenForAgent,
  reopenForItsPerson,
  reopensForAgent,
} from "./reopen.ts";
import { runWorker } from "./run-lease.ts";
import { runTask } from "./run-task.ts";
import { tellWaitingOnDecision, waitingOnDecisionWords } from "./waiting-replies.ts";

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
  // start anything, below; in a task's thread, where it may answer the agent, it is a reply).
  if (isBlank(message.text))
    return message.mentioned && !message.editTs ? refused(deps, keys, "empty_mention") : "ignored";
  // A new task's id is chosen here, so the event rows and the task's rows are written with it.
  const newId = randomUUID();
  // A slot to run it here at once. Its job is written all the same, due when the run's lease would
  // run out: the run marks it done, or due now if the run fails; after a crash, it takes over.
  const here = deps.runs.reserve(newId) ? runWorker(deps) : undefined;
  let started: RunStart | undefined;
  // The run the start leased its task to, once that statement is sent: only then can the COMMIT's
  // answer be lost with the lease written.
  let leasedTo: string | undefined;
  // A reply kept for an agent's task waiting on an approval, read without the task's lock.
  let waitedOn: string | undefined;
  // A reply in a direct message passed on to its task's card: delivered once the accept commits.
  let passedOn: string | undefined;
  // What the writer of a reply kept until an approval is decided is told (an edit was told before).
  let waitNote: string | undefined;
  try {
    const outcome = await deps.db.transaction().execute(async (tx): Promise<AcceptOutcome> => {
      const threadTs = message.threadTs ?? message.ts;
      const { task: existing, fresh } = await receiveMessage(tx, {
        channel: message.channel,
        threadTs,
        keys,
        newTaskId: newId,
        starts: message.mentioned && !message.editTs,
      });
      if (!existing && message.mentioned && message.editTs) throw new Refused("mention_in_edit");
      if (!existing && message.mentioned && namesOnly(deps, message.text))
        throw new Refused("empty_mention");
      if (!existing && message.underBotPost) throw new Refused("reply_to_notice");
      // Chatter in threads that are not tasks is not Baton's: nothing of it is stored.
      if (!existing && !message.mentioned) return "ignored";
      if (!fresh) throw new Duplicate(existing?.owner_kind === "agent" ? existing.id : undefined);
      const taskId = existing?.id ?? newId;
      if (!existing) {
        // Nothing of it is kept but its keys (below): a new message may start once the window moves on.
        if (await overTaskLimit(deps, tx, message.user)) throw new Refused("rate_limited");
        const { agent, text } = chooseAgent(deps, message);
        const conversation = [
          { taskId, stintNo: 1, stepNo: 0, message: { role: "user" as const, content: text } },
        ];
        // The job first: the task's own statement is the last, sent with the COMMIT.
        const jobId = await deps.queue.enqueue(
          tx,
          taskId,
          here ? { startAfterSeconds: Math.ceil(deps.leaseMs / 1000) } : {},
        );
        leasedTo = here;
        const task = await startTask(tx, {
          id: taskId,
          ...(here && { lease: { worker: here, ms: deps.leaseMs } }),
          last: true,
          task: {
            channelId: message.channel,
            threadTs,
            requesterId: message.user,
            title: taskTitle(text),
            requestText: text,
            owner: { kind: "agent", id: agent.id },
          },
          conversation,
          handoff: {
            taskId,
            stepNo: 0,
            kind: "start",
            from: { kind: "human", id: message.user },
            to: { kind: "agent", id: agent.id },
            note: { request: text },
          },
          audits: [
            {
              taskId,
              actor: { kind: "human", id: message.user },
              kind: "message_received",
              data: { text, channel: message.channel, ts: message.ts },
            },
            {
              taskId,
              actor: { kind: "system", id: "baton" },
              kind: "task_started",
              data: { agent: agent.id },
            },
          ],
        });
        if (here) {
          const history = conversation.map((c) => c.message);
          started = { worker: here, jobId, turn: { task, history, inputs: [], decided: false } };
        }
        return "started";
      }
      // A person's task may be closed (`/baton done`) this very moment, and an answered one opened
      // by another reply: decide from its locked row, so only one reply reopens (and audits) it.
      const task =
        existing.owner_kind === "human" || reopensForAgent(existing)
          ? ((await lockTask(tx, existing.id)) ?? existing)
          : existing;
      // An edit is read as what it says, never as an order to hand the work on.
      const handOn =
        message.mentioned && !message.editTs
          ? await handOnNamed(deps, tx, task, message)
          : undefined;
      if (handOn) {
        await handToAgent(deps, tx, task, message, handOn);
        return "continued";
      }
      // A reply to an answered or failed task reopens it with the agent that owned it last.
      const reopens = reopensForAgent(task);
      // The agent reads the edited text whole, told it corrects what it read before.
      const text = message.editTs ? `(edited) ${message.text}` : message.text;
      await insertInput(tx, { taskId: task.id, authorId: message.user, text }, [
        {
          taskId: task.id,
          actor: { kind: "human", id: message.user },
          kind: "message_received",
          data: { text, ts: message.ts, ...(message.editTs && { editTs: message.editTs }) },
        },
        // In the input's statement: the hot path gains no round trip.
        ...(reopens ? [agentTaskReopened(task, message.user)] : []),
      ]);
      if (reopens) await reopenForAgent(tx, task.id);
      const reply = { author: message.user, channel: message.channel, text };
      // A reply to a task a person closed goes back to them: no agent has its context.
      if (task.status === "done" && task.owner_kind === "human")
        await reopenForItsPerson(deps, tx, task, reply);
      // Passed on to the people who hold or decide the task, where they work from.
      else if (await passOnReply(deps, tx, task, reply)) passedOn = task.id;
      // A task waiting on a person has no turn to run; a reopened one's run sends the notice.
      if (task.status !== "waiting_human") await deps.queue.enqueue(tx, task.id);
      else if (task.owner_kind === "agent") {
        waitedOn = task.id;
        // A reply passed on from a direct message: its requester was told they hear back there.
        if (!message.editTs && !passedOn)
          waitNote = await waitingOnDecisionWords(deps, tx, task.id);
      }
      return "continued";
    });
    if (waitedOn) await wakeIfMissed(deps, waitedOn);
    if (waitNote) tellWaitingOnDecision(deps, message, waitNote);
    if (passedOn) {
      const taskId = passedOn;
      deps.afterwards.run("pass a reply on to its task's card", () =>
        deliverOutbox(deps, { taskId }),
      );
    }
    // Counted after the commit, so a rolled-back start is never counted.
    if (outcome === "started") deps.metrics.tasksStarted.inc();
    if (started) {
      const run = started;
      deps.runs.start(newId, () => runHere(deps, newId, run));
    } else deps.runs.giveBack(newId);
    return outcome;
  } catch (error) {
    deps.runs.giveBack(newId);
    if (error instanceof Duplicate) {
      // Slack sends again what it saw no answer to: the first accept may have died after its
      // commit, before its wake-up check or its run, so a retry checks; a reply in a thread too,
      // as before retries were told apart. Not a new task's twin `message` event, a duplicate of
      // every mention: its check costs a read, and with no run slot free a locked transaction,
      // when the process is busiest. Over Socket Mode, a first delivery counts 0.
      const retried = (message.retryNum ?? 0) > 0;
      if (error.agentTask && (retried || message.threadTs))
        await wakeIfMissed(deps, error.agentTask);
      return "duplicate";
    }
    if (error instanceof Refused) return refused(deps, keys, error.outcome);
    // The connection may have dropped with only the COMMIT's answer lost: the task is written then,
    // leased to a run that will not start. Given up before Slack hears of the failure, so its retry
    // finds the task free and wakes it, rather than leave it to the job, due when the lease ends.
    if (leasedTo && isConnectionLost(error)) await giveUpStart(deps, newId, leasedTo);
    throw error;
  }
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

/** Whether the person started `new_tasks_per_person` tasks already; held until the accept commits. */
async function overTaskLimit(deps: RuntimeDeps, tx: Tx, userId: string): Promise<boolean> {
  const limit = deps.agents.file.policies.rate_limits.new_tasks_per_person;
  if (!limit) return false;
  await lockRateLimit(tx, `new-tasks:${userId}`);
  return (await tasksStartedWithin(tx, userId, limit.per)) >= limit.max;
}

/** What a task started here begins its first run from: what the accept wrote, its lease, its job. */
interface RunStart {
  worker: string;
  jobId: string;
  turn: Claim["turn"];
}

/** The first run of a task started here; its job is done with it, or, if it fails, runs now. */
async function runHere(deps: RuntimeDeps, taskId: string, start: RunStart): Promise<void> {
  const claim = { undelivered: false, decided: false, turn: start.turn };
  try {
    await runTask(deps, taskId, { claim, worker: start.worker });
  } catch (error) {
    await recordFailedTry(deps, { taskId, error, retried: true });
    // Retried through the queue at once; should even that fail, the job comes due with the lease.
    await deps.queue.runNow(start.jobId).catch((e: unknown) => {
      deps.log.warn({ err: e, taskId }, "could not bring the task's job forward");
    });
    throw error;
  }
  // Should this fail, the job comes due later and finds nothing left to do.
  await deps.queue.done(deps.db, start.jobId).catch((e: unknown) => {
    deps.log.warn({ err: e, taskId }, "could not mark the task's job done");
  });
}
