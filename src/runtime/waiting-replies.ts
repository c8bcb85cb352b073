import { toolWords } from "../core/tools/tool.ts";
import { pendingCalls } from "../db/approvals.repository.ts";
import type { Tx } from "../db/database.ts";
import { liveEscalationCard } from "../db/escalations.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import type { RuntimeDeps } from "./deps.ts";
import { waitingOutRateLimits } from "./retry-after.ts";

/**
 * A message kept for an agent that waits on an approval is read only once the approval is decided.
 * Its writer, often an approver asking "why 149?" under the card, would hear nothing and wait on an
 * answer that cannot come first: they are told so, privately, and no model turn runs for it.
 * The words, or undefined when the task waits on no approval.
 */
export async function waitingOnDecisionWords(
  deps: RuntimeDeps,
  tx: Tx,
  taskId: string,
): Promise<string | undefined> {
  const calls = await pendingCalls(tx, taskId);
  const [first] = calls;
  if (!first) return undefined;
  const agent = deps.agents.persona(first.agent_id).name;
  const what = calls
    .map((c) => `to ${toolWords(deps.tools.get(c.tool) ?? { name: c.tool })}`)
    .join("; ");
  const cards = calls.length === 1 ? "its approval card" : "its approval cards";
  return `${agent} is waiting for a decision on ${cards} (${what}), and reads your message only after it. The card's arguments say what the call would do: whoever may approve it decides there, with Approve or Reject.`;
}

/**
 * A mention of Baton in the thread of a task a person holds, or whose escalation is open, runs no
 * agent: its writer asked for an answer that no agent is asked for. The person holding it (who only
 * hands it on by naming an agent first) and anyone writing under an open escalation (whose owners
 * decide on its card) are told so. Undefined when the task waits on no person, or on a person other
 * than the writer: they are paged in the thread (see pageHolder), where the writer sees it. Said
 * without mentions: an ephemeral's text is escaped whole (see noticeText).
 */
export async function waitingOnPersonWords(
  tx: Tx,
  task: TaskRow,
  userId: string,
): Promise<string | undefined> {
  if (task.status !== "waiting_human" || task.owner_kind !== "human") return undefined;
  const card = await liveEscalationCard(tx, task.id);
  if (!card) return undefined;
  if (card.takenOver)
    return card.person === userId && task.owner_id === userId ? HOLDER_WORDS : undefined;
  return "No agent reads this message now: this task waits on its escalation card, where the people it names take it over or send it back to an agent.";
}

const HOLDER_WORDS =
  "You took this task over, so no agent reads this message. To hand the work to an agent, start with its name (`@Baton billing: refund 40 USD, I checked the order`) or use *Hand it to an agent* on its card; once it is handled, close it with `/baton done` and a link to this thread.";

/**
 * Told once: the message's keys make its twin event and Slack's retries duplicates. Only informs,
 * so a stop does not wait out a 429 for it.
 */
export function tellWaitingOnDecision(
  deps: RuntimeDeps,
  message: PrivateNoticeTo,
  words: string,
): void {
  tellPrivately(deps, message, words, {
    what: "tell a person no agent reads their message before a decision",
    outboxId: `waits-on-decision:${message.eventId}`,
  });
}

/** Whom a private notice answers: a message of theirs, in its channel and thread. */
type PrivateNoticeTo = {
  eventId: string;
  channel: string;
  threadTs: string | undefined;
  user: string;
};

/**
 * An ephemeral notice to the writer of a message, once Slack has the event's answer (a 429 waited
 * out does not hold that answer). A stop does not wait the 429 out: the notice only informs, so
 * losing it then costs less than holding the stop for Retry-After. `outboxId` keys its post.
 */
export function tellPrivately(
  deps: RuntimeDeps,
  message: PrivateNoticeTo,
  words: string,
  how: { what: string; outboxId: string },
): void {
  const notice = {
    kind: "ephemeral" as const,
    channel: message.channel,
    ...(message.threadTs && { threadTs: message.threadTs }),
    user: message.user,
    text: words,
  };
  deps.afterwards.run(how.what, (stopping) =>
    waitingOutRateLimits(() => deps.chat.deliver(notice, how.outboxId), stopping),
  );
}
