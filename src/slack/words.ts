import { duration } from "../core/duration.ts";
import type { AskerRole } from "../core/policy.ts";
import { headOf } from "../core/text.ts";
import { nearestOf } from "../core/typos.ts";
import { isConnectionLost } from "../db/database.ts";
import { isBatonError, RetryAfterError } from "../errors.ts";
import type { AcceptOutcome } from "../runtime/accept.ts";
import type { DecisionOutcome } from "../runtime/approvals.ts";
import type { CloseOutcome } from "../runtime/close-task.ts";
import { clip, escapeMrkdwn, mention, slackDate } from "./mrkdwn.ts";
import { typedText } from "./typed-text.ts";

/** The one place that turns outcomes and error codes into words for a Slack user. */
export function approvers(people: { users: string[]; groups: string[] }): string {
  const names = [...people.users, ...people.groups].map((id) => mention(id));
  return names.length ? names.join(", ") : "the approvers named in the policy";
}

export function decisionWords(
  outcome: DecisionOutcome,
  info: { toolName: string; approvers: { users: string[]; groups: string[] } } | undefined,
): string | undefined {
  switch (outcome.outcome) {
    case "decided":
      return undefined;
    case "already_decided": {
      const when = outcome.at ? ` ${slackDate(outcome.at)}` : "";
      if (outcome.byClicker && outcome.status === "approved")
        return `You already approved this${when}; a second click does not run it again.`;
      if (outcome.byClicker && outcome.status === "rejected")
        return `You already rejected this${when}; it did not go ahead.`;
      if (outcome.status === "cancelled")
        return `This request was cancelled${when}: ${escapeMrkdwn(outcome.reason ?? "the agents file changed")}, so it can no longer be approved. Nothing was done.`;
      const who = outcome.by ? ` by ${mention(outcome.by)}` : "";
      return `This request was already ${outcome.status}${who}${when}. Nothing more was done.`;
    }
    case "expired":
      return "This request expired before a decision, so nothing was done. The agent has been told.";
    case "moved_on": {
      const one = outcome.to.users.length === 1 && outcome.to.groups.length === 0;
      return `This request passed its deadline and went to ${approvers(outcome.to)}, who ${one ? "decides" : "decide"} now. Nothing was done.`;
    }
    case "not_found":
      return "Nothing was done: this approval request is no longer in Baton's records. Ask in the task's thread.";
    case "refused":
      if (outcome.reason === "no_longer_named") return noLongerNamedWords(outcome, info);
      return outcome.reason === "own_request"
        ? `You asked for this (${ASKED_AS[outcome.askedAs]}), so you can't approve or reject it yourself. Someone else on the approver list has to decide.`
        : `Only ${info ? approvers(info.approvers) : "the named approvers"} may decide on ${info ? `\`${info.toolName}\`` : "this request"}.`;
  }
}

/** A person an escalation's card names, whom the agents file in use no longer names for its lane. */
function noLongerInLaneWords(stillNamed: readonly string[]): string {
  const who = stillNamed.length
    ? `${stillNamed.map(mention).join(", ")} can take it over or send it back.`
    : "Nobody else this card names is in its lane now, so it waits for its deadline.";
  return `The agents file no longer names you for this escalation's lane, so nothing was done. ${who}`;
}

/** A person the card asked, whom the agents file in use no longer names for its policy. */
function noLongerNamedWords(
  outcome: Extract<DecisionOutcome, { reason: "no_longer_named" }>,
  info: { toolName: string } | undefined,
): string {
  const what = info ? `\`${escapeMrkdwn(info.toolName)}\`` : "this request";
  const now = outcome.stillNamed;
  const who = [...now.users, ...now.groups].length
    ? `${approvers(now)} ${now.users.length === 1 && now.groups.length === 0 ? "decides" : "decide"} now.`
    : "Nobody else this card asked is named for it now, so it waits for its deadline.";
  return `The agents file no longer names you to decide on ${what} (policy \`${escapeMrkdwn(outcome.policyId)}\`), so nothing was done. ${who}`;
}

/** How a person asked for an approval, as its card names them. */
const ASKED_AS: Record<AskerRole, string> = {
  requester: "you started the task",
  handed_on: "you handed the work on to the agent",
  thread: "you wrote in its thread",
};

export function escalationWords(
  check:
    | { outcome: "ok" | "decided" }
    | { outcome: "already_decided"; by: string | null; status?: string; byClicker: boolean }
    | {
        outcome: "refused";
        owner: { kind: string; id: string };
        fallback?: string[];
        reason?: "own_request" | "outside_organization" | "no_longer_named";
        organization?: string;
        stillNamed?: string[];
      },
): string | undefined {
  const byClicker = check.outcome === "already_decided" && check.byClicker;
  if (byClicker && check.status === "taken_over")
    return "You already took this over, so it is yours; a second click changes nothing.";
  if (byClicker && check.status === "sent_back") return "You already sent this back to an agent.";
  if (check.outcome === "already_decided" && check.status === "done")
    return "That task was marked done, so there is nothing left to hand to an agent.";
  if (check.outcome === "already_decided" && check.status === "held" && check.by)
    return `${mention(check.by)} took this over; only they can hand it to an agent.`;
  if (check.outcome === "already_decided")
    return `This escalation was already handled${check.by ? ` by ${mention(check.by)}` : ""}.`;
  const owner =
    check.outcome === "refused" ? check.owner.id.split(",").map(mention).join(", ") : "";
  if (check.outcome === "refused" && check.reason === "own_request")
    return `You asked for this, so you can't take it over or send it back yourself; ${owner} will pick it up.`;
  if (check.outcome === "refused" && check.reason === "outside_organization")
    return outsiderWords(owner, check.organization);
  if (check.outcome === "refused" && check.reason === "no_longer_named")
    return noLongerInLaneWords(check.stillNamed ?? []);
  if (check.outcome !== "refused") return undefined;
  const whose = check.owner.kind === "channel" ? `the members of ${owner}` : owner;
  // Named only while it is one: once the escalation moved to its fallback, they are its owner.
  const fallback = check.fallback?.length
    ? ` (or ${check.fallback.map(mention).join(", ")}, its fallback)`
    : "";
  return `This escalation is for ${whose}; only they${fallback} can take it over or send it back.`;
}

/**
 * For a person of another organization in a channel shared with it (Slack Connect): they may be
 * its member, so "only its members" would not say why.
 */
function outsiderWords(channel: string, organization: string | undefined): string {
  const whose = organization
    ? `people of ${escapeMrkdwn(organization)}`
    : "people of the organization that runs Baton";
  return `Work for the members of ${channel} is for ${whose}, so you can't take it over or send it back. To let someone of another organization decide, the lane's owners can be named in Baton's agents file.`;
}

/** What a person is told when their click, form or command failed: nothing was done, and what next. */
export function failureWords(error: unknown): string {
  if (isBatonError(error) && error.fault === "user") return `Nothing was done: ${error.message}.`;
  if (error instanceof RetryAfterError) {
    const seconds = Math.max(1, Math.ceil(error.retryAfterMs / 1000));
    return `Slack is busy just now, so nothing was done. Try again in ${duration(seconds * 1000)}.`;
  }
  if (isConnectionLost(error))
    return "Baton could not reach its database just now, so nothing was done. Try again in a minute.";
  return "Something went wrong on Baton's side, so nothing was done (it is in Baton's log). Try again, or tell whoever runs Baton.";
}

// Slack reads `<…>` as a link or mention even inside backticks: the placeholders are escaped.
const REF = "&lt;task, order or thread link&gt;";

const TASK_STATUS: Record<string, string> = {
  active: "in progress",
  waiting_human: "waiting on a person",
  done: "done",
  failed: "failed",
};

/** A task's status as a person reads it (App Home, `/baton status`), never its code. */
export function taskStatusWords(status: string): string {
  return TASK_STATUS[status] ?? status.replaceAll("_", " ");
}

/**
 * Said with the usage of a verb that takes a task: typed in a thread, `/baton status` alone looks
 * like it should mean that thread, but Slack tells a command only its channel.
 */
const NAME_THE_THREAD =
  "A slash command can't see which thread you typed it in: paste the thread's link (⋮ › Copy link), a task id or an order id.";

/** What to type, when `/baton <verb>` came without what it needs. */
export const USAGE = {
  status: `Usage: \`/baton status ${REF}\`\n${NAME_THE_THREAD}`,
  audit: `Usage: \`/baton audit ${REF}\`\n${NAME_THE_THREAD}`,
  done: `Usage: \`/baton done ${REF}\`\n${NAME_THE_THREAD}`,
  who: "Usage: `/baton who &lt;order or task&gt; [tool]`, e.g. `/baton who 1077 issue_refund`",
};

/** `/baton agents <days>` with days that are not a whole number from 1 to 365: what was typed, and what works. */
export function agentsDaysWords(typed: string): string {
  const n = Number(typed);
  const wrong = Number.isInteger(n)
    ? `${asTyped(typed)} days is out of range`
    : Number.isFinite(n) && typed.trim() !== ""
      ? `${asTyped(typed)} isn't a whole number of days`
      : `${asTyped(typed)} isn't a number of days`;
  return `${wrong}: try \`/baton agents 30\` (1 to 365).`;
}

/** What a person typed, shown back in a code span: cut and escaped, as any typed text. */
function asTyped(text: string): string {
  // A backtick would close the code span early.
  return `\`${clip(text.replaceAll("`", "'"), 40)}\``;
}

export const HELP_TEXT = [
  "*Baton* — your AI team in Slack. Mention me in a channel (`@Baton where is order 1042?`) and the right specialist answers in the thread.",
  `• \`/baton status ${REF}\` — where a task is and who owns it`,
  `• \`/baton audit ${REF}\` — the whole story: handoffs, tool calls, approvals, model calls`,
  "• `/baton who &lt;order or task&gt; [tool]` — who processed it (for example `/baton who 1077 issue_refund`)",
  `• \`/baton done ${REF}\` — close a task you took over, once the work is finished`,
  "• `/baton agents [days]` — what each agent did lately, and what its record says about its autonomy",
  "• `/baton help` — this message",
  "You may read a task from its thread's channel, or if you asked for it, own or decided on it, or supervise.",
].join("\n");

/** The verbs `/baton` knows, as HELP_TEXT lists them. */
const VERBS = ["status", "audit", "who", "done", "agents", "help"] as const;

/** Said before the help when `/baton <verb>` names no command: the verb it was near, if any. */
export function unknownVerbWords(verb: string): string {
  const shown = `${asTyped(verb)} is not a \`/baton\` command`;
  const near = nearestVerb(verb.toLowerCase());
  return near ? `${shown}; did you mean \`${near}\`?` : `${shown}.`;
}

/** The verb within a typo or two of `word` (one for the short ones), so `stauts` finds `status`. */
function nearestVerb(word: string): string | undefined {
  return nearestOf(
    word,
    VERBS,
    (verb) => [verb],
    (verb) => (verb.length > 4 ? 2 : 1),
  );
}

/** What a person is told, once, of a message Baton refused; none for a message it took or passed over. */
export function refusalWords(
  outcome: AcceptOutcome,
  limit: { max: number; per: number } | undefined,
): string | undefined {
  switch (outcome) {
    case "rate_limited":
      return limit && rateLimitedWords(limit);
    case "empty_mention":
      return "You mentioned me without a question. Send it in a new message after @Baton (an edit is not read as a mention), for example `@Baton where is order 1042?`";
    case "mention_in_edit":
      return "I only see mentions in new messages. Send it again as a new message.";
    case "reply_to_notice":
      return "I don't read replies under my notices, so this started nothing. To act on a task, use the buttons on its card or reply in its thread; to ask me something new, send it as a new message here, not in a thread.";
    default:
      return undefined;
  }
}

/** To a person over `policies.rate_limits.new_tasks_per_person`: nothing started, and when to retry. */
export function rateLimitedWords(limit: { max: number; per: number }): string {
  const tasks = limit.max === 1 ? "1 task" : `${limit.max} tasks`;
  // "the last hour", not "the last 1 hour".
  const window = duration(limit.per).replace(/^1 /, "");
  return `You started ${tasks} in the last ${window}, as many as Baton takes from one person, so this did not start a new one. Try again later, or reply in the thread of a task you already have.`;
}

/** Under `/baton who`'s answer when some of the reference's tasks are not the asker's to read. */
export function withheldWords(count: number): string | undefined {
  if (count === 0) return undefined;
  return count === 1
    ? "1 more task of this reference is withheld: you can't read it here (ask in its thread's channel, or ask its requester or a supervisor)."
    : `${count} more tasks of this reference are withheld: you can't read them here (ask in their threads' channels, or ask their requesters or a supervisor).`;
}

/** The answer to `/baton done`: what happened, or why not and what to do instead. */
export function closeWords(
  result: CloseOutcome,
  ownerName: (owner: { kind: string; id: string }) => string,
  ref: string,
): string {
  switch (result.outcome) {
    case "closed":
      return `Done: *${typedText(result.title, 200)}* is closed, and its thread is told.`;
    case "not_found":
      return `I couldn't find a task for "${escapeMrkdwn(headOf(ref, 100))}". Try a task id, an order number or a thread link.`;
    case "already_closed":
      return `That task is already ${result.status}; there is nothing to close.`;
    case "not_with_a_person":
      return `That task is with ${ownerName(result.owner)}, not with a person: only a task someone took over can be marked done.`;
    case "escalation_open":
      return "That task waits on its escalation card: take it over (or send it back) from the card first.";
    case "not_owner":
      return `That task is ${ownerName(result.owner)}'s; only they can mark it done.`;
  }
}
