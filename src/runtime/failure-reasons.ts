// Why the model stopped a task, as its thread, `/baton status` and the digest say it: plain words for
// the people who asked. The technical causes (finish_reason, reject codes) stay in the audit trail
// and the log.

import type { ToolRateLimit } from "../config/agents-schema.ts";
import type { RateLimitStop } from "../core/ports.ts";

/** A reply the server's content filter withheld: the model asked again meets the same filter. */
export const WITHHELD_REASON = "the AI model's content filter withheld its answer";

/** Each cause of an unusable reply (an audit event's `reason`), said of the model: "it …". */
const CAUSES: Record<string, string> = {
  empty: "gave an empty reply",
  cut_off: "stopped mid-answer at its length limit",
  unreadable: "wrote a tool call that could not be read",
  not_allowed: "called a tool it may not use",
  unknown_tool: "called a tool that does not exist",
  invalid_arguments: "called a tool with arguments it does not take",
  no_hand_back: "tried to hand the task back with nobody to hand it back to",
  rate_limited: "kept calling a tool past its rate limit",
  too_many_calls: "asked for more tool calls in one reply than Baton runs",
};

/**
 * Why `count` unusable replies in a row stopped the task, from what each reply did wrong (the
 * causes of each, oldest first; a reply whose causes are unknown is left out).
 */
export function strikesReason(count: number, replies: readonly (readonly string[])[]): string {
  const causes = [...new Set(replies.flat())];
  if (replies.length === count && causes.length === 1 && causes[0] === "cut_off")
    return `the AI model's answers were cut off at its length limit ${count} times`;
  const said = causes.flatMap((cause) => CAUSES[cause] ?? []);
  const why = said.length > 0 ? ` (it ${listed(said)})` : "";
  return `the AI model's replies could not be used ${count} times in a row${why}`;
}

/** "a", "a and b", "a, b and c". */
function listed(items: readonly string[]): string {
  return items.length < 2 ? items.join("") : `${items.slice(0, -1).join(", ")} and ${items.at(-1)}`;
}

/**
 * When replies that met a rate limit stopped a task, the limit and when a reply stops meeting it:
 * the longest window of the tools the last reply was refused (or, if it was refused none, of every
 * limited tool), so the time said is never too soon.
 */
export function rateLimitStop(
  causes: readonly (readonly string[])[],
  limits: readonly ToolRateLimit[],
  audits: readonly { kind: string; data?: Record<string, unknown> }[],
  now: Date,
): RateLimitStop | undefined {
  if (!causes.some((c) => c.includes("rate_limited"))) return undefined;
  const refused = audits.flatMap((a) =>
    a.kind === "tool_refused" && a.data?.reason === "rate_limited" ? [a.data.tool] : [],
  );
  const named = limits.filter((l) => refused.includes(l.tool));
  const longest = (named.length > 0 ? named : limits).toSorted((a, b) => b.per - a.per)[0];
  if (!longest) return undefined;
  const until = new Date(now.getTime() + longest.per).toISOString();
  return { max: longest.max, perMs: longest.per, until };
}
