import type {
  AgentsFile,
  ApprovalCondition,
  ApprovalPolicy,
  People,
} from "../config/agents-schema.ts";
import type { Agent } from "./agents/directory.ts";
import type { ToolDefinition } from "./tools/tool.ts";

export type Gate =
  | { kind: "run" }
  | { kind: "shadow" }
  | {
      kind: "approval";
      policyId: string;
      approvers: People;
      expiresAfterMs: number;
      fallback: People | undefined;
      /** Why it waits, in words, when the task's earlier calls count (see `passesWithEarlier`). */
      why?: string;
    };

const SUPERVISED_EXPIRY_MS = 4 * 3_600_000;

/**
 * Whether a tool call runs now, waits for a human, or (shadow mode) is only proposed.
 * Decided in code from the agents file: nothing in a prompt or a customer's text reaches here.
 * `earlier`: the arguments of the tool's calls in this task that count towards a threshold (see
 * `countsEarlierCalls`); a threshold compares this call's amount plus theirs.
 */
export function gateFor(
  agent: Agent,
  tool: ToolDefinition,
  args: unknown,
  file: AgentsFile,
  earlier: readonly unknown[] = [],
): Gate {
  if (tool.toolClass === "read") return { kind: "run" };
  if (agent.autonomy === "shadow") return { kind: "shadow" };
  for (const policy of file.policies.approvals) {
    if (policy.tool !== tool.name) continue;
    const match = matches(policy.when, args, { tool: tool.name, args: earlier });
    if (match) return { ...approvalGate(policy), ...(match.why && { why: match.why }) };
  }
  // An irreversible tool is gated as a write is: the class tells the operator, and policies name it.
  if (agent.autonomy === "supervised") {
    const supervisors = file.policies.supervisors;
    if (supervisors) {
      return {
        kind: "approval",
        policyId: "supervised",
        approvers: supervisors,
        expiresAfterMs: SUPERVISED_EXPIRY_MS,
        fallback: undefined,
      };
    }
    // A supervised agent with nobody to supervise it must not act alone.
    return { kind: "shadow" };
  }
  return { kind: "run" };
}

/**
 * A write a person rejected in this task waits for a person again when called again, whatever its
 * arguments now: a model must not get round a rejection by asking for less (149 USD rejected, then
 * 60, under the policy's threshold). The policy that asked the first time decides; one no longer
 * in the agents file leaves it to the people it asked.
 */
export function gateAfterRejection(
  rejected: { policyId: string; approvers: People; expiresAfterMs: number },
  file: AgentsFile,
): Gate {
  const policy = file.policies.approvals.find((p) => p.id === rejected.policyId);
  if (policy) return approvalGate(policy);
  const supervisors = rejected.policyId === "supervised" ? file.policies.supervisors : undefined;
  return {
    kind: "approval",
    policyId: rejected.policyId,
    approvers: supervisors ?? rejected.approvers,
    expiresAfterMs: supervisors ? SUPERVISED_EXPIRY_MS : rejected.expiresAfterMs,
    fallback: undefined,
  };
}

function approvalGate(policy: ApprovalPolicy): Gate {
  return {
    kind: "approval",
    policyId: policy.id,
    approvers: policy.approvers,
    expiresAfterMs: policy.expires_after,
    fallback: policy.fallback,
  };
}

/**
 * Whether the gate needs the tool's earlier calls in the task for this call: only when one of the
 * tool's policies has a threshold (and the gate would read it: not for a read tool, nor in shadow
 * mode). Any other call is gated without looking them up.
 */
export function countsEarlierCalls(agent: Agent, tool: ToolDefinition, file: AgentsFile): boolean {
  if (tool.toolClass === "read" || agent.autonomy === "shadow") return false;
  return file.policies.approvals.some(
    (p) => p.tool === tool.name && p.when !== undefined && thresholdOf(p.when) !== undefined,
  );
}

type Match = { why?: string };

/** Undefined when the condition does not apply to the call; else why it does, when not plain. */
function matches(
  condition: ApprovalCondition | undefined,
  args: unknown,
  earlier: { tool: string; args: readonly unknown[] },
): Match | undefined {
  if (!condition) return {};
  const value = argumentOf(args, condition.argument);
  const threshold = thresholdOf(condition);
  if (threshold !== undefined) {
    // The model picks the argument's shape: "150" is 150, and an amount that cannot be read as a
    // number (left out, "150 USD") is one a person must look at: the tool may read it as more.
    // A threshold is on the amount's size: a refund written as -150 may well move 150.
    const amount = sizeOf(value);
    if (amount === undefined) return {};
    return passesWithEarlier(condition, threshold, amount, earlier);
  }
  if (condition.equals !== undefined) return sameValue(value, condition.equals) ? {} : undefined;
  return {};
}

function thresholdOf(condition: ApprovalCondition): number | undefined {
  return condition.greater_than ?? condition.at_least;
}

function argumentOf(args: unknown, name: string): unknown {
  return (args as Record<string, unknown> | null)?.[name];
}

/**
 * A threshold counts what the tool already did in the task: 60 USD twice is 120, so a model (or a
 * customer's text steering it) cannot split a refund under it. An earlier amount that cannot be
 * read as a number leaves the total unknown, so the call waits; a negative one counts its size.
 */
function passesWithEarlier(
  condition: ApprovalCondition,
  threshold: number,
  amount: number,
  earlier: { tool: string; args: readonly unknown[] },
): Match | undefined {
  const { argument } = condition;
  const bound = condition.greater_than !== undefined ? `over ${threshold}` : `${threshold} or more`;
  let before = 0;
  for (const args of earlier.args) {
    const n = sizeOf(argumentOf(args, argument));
    if (n === undefined)
      return {
        why: `${argument} ${amount} in this call; an earlier ${earlier.tool} call of this task has an ${argument} that is not a number, so the total may be ${bound}`,
      };
    before += n;
  }
  // 12 significant digits: 33.33 + 33.33 + 33.34 is 100, not 99.99999999999999, in floating point.
  const total = before > 0 ? Number((amount + before).toPrecision(12)) : amount;
  const passes = condition.greater_than !== undefined ? total > threshold : total >= threshold;
  if (!passes) return undefined;
  if (before === 0) return {};
  return {
    why: `${argument} ${amount} in this call, ${total} with this task's earlier ${earlier.tool} calls (${bound})`,
  };
}

/** An amount's size, without its sign (which the tool may read either way). */
function sizeOf(value: unknown): number | undefined {
  const n = asNumber(value);
  return n === undefined ? undefined : Math.abs(n);
}

function asNumber(value: unknown): number | undefined {
  if (typeof value === "number") return value;
  if (typeof value !== "string" || value.trim() === "") return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : undefined;
}

/**
 * `equals: "1077"` matches 1077, " 1077 ", ["1077"] and "１０７７" too, and `equals: true` matches
 * "true": the tool is likely to read them as one.
 */
function sameValue(value: unknown, expected: string | number | boolean): boolean {
  if (value === expected) return true;
  // A list the model sent where one value was meant acts on each: it matches if one matches.
  if (Array.isArray(value)) return value.some((v) => !Array.isArray(v) && sameValue(v, expected));
  if (typeof expected === "boolean")
    return typeof value === "string" && value.trim().toLowerCase() === String(expected);
  if (typeof value === "boolean") return false;
  const text = typeof value === "string" ? asciiDigits(value) : value;
  if (typeof expected === "number") return asNumber(text) === expected;
  if (typeof text === "number") return asNumber(expected) === text;
  return typeof text === "string" && text.trim() === asciiDigits(expected).trim();
}

const DIGIT = /\p{Nd}/u;

/**
 * Each decimal digit of another script as its ASCII digit ("１０７７", "١٠٧٧": 1077), as Python's
 * int() and Java's parseLong read them: the endpoint acts on 1077. Unicode assigns decimal digits
 * in runs of ten, 0 to 9, so a digit's value is its place in its run.
 */
function asciiDigits(text: string): string {
  return text.replace(/\p{Nd}/gu, (digit) => {
    let place = 0;
    for (let at = digit.codePointAt(0) ?? 0; DIGIT.test(String.fromCodePoint(at - 1)); at--)
      place++;
    return String(place % 10);
  });
}

/** Who asked for an approval, by their part in it: none of them may decide it. */
export interface Askers {
  /** Who started the task. */
  requester: string;
  /** People who handed the work on to an agent with an instruction (a send-back, "billing: …"). */
  handedOnBy: string[];
  /** Anyone else whose reply in the thread the agent had read when it asked. */
  inThread: string[];
}

export type AskerRole = "requester" | "handed_on" | "thread";

/** The part a person had in asking, the largest if several; undefined if they asked nothing. */
export function askedAs(askers: Askers, userId: string): AskerRole | undefined {
  if (userId === askers.requester) return "requester";
  if (askers.handedOnBy.includes(userId)) return "handed_on";
  return askers.inThread.includes(userId) ? "thread" : undefined;
}

/**
 * Nobody approves their own request: not the task's requester, nor anyone else among its `Askers`
 * (`askedForIt`), such as a lead who replied "refund it" or handed the work on to the agent.
 * `namedNow`: who the agents file in use names for the approval's policy (see `namedNow`); a
 * person the card asked whom it no longer names (a lead who left) may not decide either.
 */
export function mayDecide(
  userId: string,
  approval: { requesterId: string; approvers: People; namedNow?: People; askedForIt: boolean },
  userGroups: readonly string[],
): { ok: true } | { ok: false; reason: "own_request" | "not_an_approver" | "no_longer_named" } {
  if (userId === approval.requesterId || approval.askedForIt)
    return { ok: false, reason: "own_request" };
  const among = (people: People) =>
    people.users.includes(userId) || people.groups.some((g) => userGroups.includes(g));
  if (!among(approval.approvers)) return { ok: false, reason: "not_an_approver" };
  if (approval.namedNow && !among(approval.namedNow))
    return { ok: false, reason: "no_longer_named" };
  return { ok: true };
}

const NOBODY: People = { users: [], groups: [] };

/**
 * Who the agents file in use names to decide an approval now: its policy's approvers, or its
 * fallback once the deadline gave the approval to it (`escalated`), as the stored approvers
 * became the fallback then. A supervised agent's write is keyed `supervised` (see `gateFor`) and
 * decided by `policies.supervisors`; a policy of that id comes first, as in `gateAfterRejection`.
 * Undefined when the file no longer has the policy: the people the card asked still decide. The
 * file then either lets the call run ungated (the gate was dropped, not the people), or would not
 * run it at all, and then the approval is cancelled (cancelled-approvals.ts); refusing every
 * click would leave the call waiting on nobody until it expires.
 */
export function namedNow(
  file: AgentsFile,
  approval: { policyId: string; escalated: boolean },
): People | undefined {
  const policy = file.policies.approvals.find((p) => p.id === approval.policyId);
  // A fallback taken out of the policy names nobody: the card waits out its deadline and expires.
  if (policy) return approval.escalated ? (policy.fallback ?? NOBODY) : policy.approvers;
  return approval.policyId === "supervised" ? file.policies.supervisors : undefined;
}

/**
 * Of the people a card asked (`asked`), those the agents file still names (`now`): the answer to
 * "who decides now" for a person it no longer names. `members`: each group's members, of both.
 * A person added to the policy since is not among them: the card names who decides.
 */
export function stillNamed(
  asked: People,
  now: People,
  members: ReadonlyMap<string, readonly string[]>,
): People {
  const groups = asked.groups.filter((g) => now.groups.includes(g));
  const among = (people: People, user: string) =>
    people.users.includes(user) || people.groups.some((g) => members.get(g)?.includes(user));
  // A group both name is named whole; anyone else named by both, by name or by a group, one by one.
  const inBoth = new Set(groups.flatMap((g) => members.get(g) ?? []));
  const everyone = [asked, now].flatMap((p) => [
    ...p.users,
    ...p.groups.flatMap((g) => members.get(g) ?? []),
  ]);
  const users = [...new Set(everyone)].filter(
    (u) => !inBoth.has(u) && among(asked, u) && among(now, u),
  );
  return { users, groups };
}
