// A person's click on an approval card: checked in code, decided once in SQL. Parking the call is
// approval-requests.ts.
import type { People } from "../config/agents-schema.ts";
import type { AskerRole } from "../core/policy.ts";
import { askedAs, mayDecide, namedNow, stillNamed } from "../core/policy.ts";
import { whoAsked } from "../db/approval-askers.repository.ts";
import * as approvalsDb from "../db/approvals.repository.ts";
import { audit } from "../db/ledger.repository.ts";
import type { ApprovalRow } from "../db/schema.ts";
import { enforceApprovalDeadline, resumeAfterDecision } from "./approval-deadline.ts";
import { cancelIfNotRunnable } from "./cancelled-approvals.ts";
import type { RuntimeDeps } from "./deps.ts";
import { isAmong } from "./escalation-owners.ts";
import { deliverOutbox } from "./outbox.ts";

export type DecisionOutcome =
  | { outcome: "decided"; status: "approved" | "rejected" }
  /**
   * `byClicker`: the decision was the clicker's own, and this their second click. `reason`: the
   * decision's (why a cancelled one was).
   */
  | {
      outcome: "already_decided";
      status: string;
      by: string | null;
      at: Date | null;
      reason: string | null;
      byClicker: boolean;
    }
  | { outcome: "expired" }
  /** Past its deadline it went to its fallback, `to`, who decide now; the clicker is not among them. */
  | { outcome: "moved_on"; to: { users: string[]; groups: string[] } }
  /** The card's approval has no row: its id means nothing to a person, so only the log has it. */
  | { outcome: "not_found" }
  /** `askedAs`: the part the person had in asking for it (the card names them so). */
  | { outcome: "refused"; reason: "own_request"; askedAs: AskerRole }
  | { outcome: "refused"; reason: "not_an_approver" }
  /**
   * The card asked the clicker, but the agents file in use no longer names them for its policy
   * (`policyId`). `stillNamed`: those of the card's people it still names, who decide now.
   */
  | { outcome: "refused"; reason: "no_longer_named"; policyId: string; stillNamed: People };

type ClickInput = { approvalId: string; userId: string; decision: "approved" | "rejected" };

/** The row as the click was allowed to decide it, or the answer the click gets instead. */
type Check = { allowed: ApprovalRow } | { refused: DecisionOutcome };

/**
 * Whether this click may decide, judged on the row as it is now. A decided, expired or
 * unauthorized request answers with the outcome (audited, as every refused click is); a missing
 * one has no task to audit against, so it is logged.
 */
async function checkClick(deps: RuntimeDeps, input: ClickInput): Promise<Check> {
  const approval = await approvalsDb.findApproval(deps.db, input.approvalId);
  if (!approval) {
    deps.log.warn(
      { approvalId: input.approvalId, user: input.userId },
      "a click on an approval card whose approval does not exist",
    );
    return { refused: { outcome: "not_found" } };
  }
  if (approval.status !== "pending")
    return { refused: await alreadyDecided(deps, approval, input) };
  // The agents file changed since the call was parked (a reload that came as the request
  // committed, say): a call it would not run is cancelled, and the click told so. So is one a
  // click on a replica still on an older file would not run (a rolling deploy): see README.
  if (await cancelIfNotRunnable(deps, approval)) return checkClick(deps, input);
  if (approval.past_deadline) {
    // Past its deadline before the sweep came by: the click moves it on as the sweep would.
    const moved = await enforceApprovalDeadline(deps, approval.id);
    if (moved === "expired") return { refused: { outcome: "expired" } };
    // Escalated (here or by a sweep) or decided meanwhile: each happens once, so this ends.
    return checkClick(deps, input);
  }
  return authorize(deps, approval, input);
}

async function alreadyDecided(
  deps: RuntimeDeps,
  approval: ApprovalRow,
  input: ClickInput,
): Promise<DecisionOutcome> {
  await audit(deps.db, {
    taskId: approval.task_id,
    actor: { kind: "human", id: input.userId },
    kind: "approval_click_ignored",
    data: { approval_id: approval.id, status: approval.status, decision: input.decision },
  });
  return {
    outcome: "already_decided",
    status: approval.status,
    by: approval.decided_by,
    at: approval.decided_at,
    reason: approval.reason,
    byClicker: approval.decided_by === input.userId,
  };
}

async function authorize(
  deps: RuntimeDeps,
  approval: ApprovalRow,
  input: ClickInput,
): Promise<Check> {
  // Judged by the file in use now: a person taken out of the policy (offboarded) decides nothing.
  const now = namedNow(deps.agents.file, {
    policyId: approval.policy_id,
    escalated: approval.escalated_at !== null,
  });
  const groups = await memberGroups(deps, input.userId, [
    ...approval.approvers.groups,
    ...(now?.groups ?? []),
  ]);
  const asked = askedAs(await whoAsked(deps.db, approval.id), input.userId);
  const check = mayDecide(
    input.userId,
    {
      requesterId: approval.requester_id,
      approvers: approval.approvers,
      ...(now && { namedNow: now }),
      askedForIt: asked !== undefined,
    },
    groups,
  );
  if (check.ok) return { allowed: approval };
  const refused = await refusal(deps, approval, input.userId, {
    reason: check.reason,
    asked,
    now,
  });
  await audit(deps.db, {
    taskId: approval.task_id,
    actor: { kind: "human", id: input.userId },
    kind: "approval_refused",
    data: {
      approval_id: approval.id,
      reason: check.reason,
      ...("askedAs" in refused && { asked_as: refused.askedAs }),
      ...(check.reason === "no_longer_named" && { policy_id: approval.policy_id }),
      decision: input.decision,
    },
  });
  return { refused };
}

/** What a click `mayDecide` refused is told. */
async function refusal(
  deps: RuntimeDeps,
  approval: ApprovalRow,
  userId: string,
  why: {
    reason: "own_request" | "not_an_approver" | "no_longer_named";
    asked: AskerRole | undefined;
    now: People | undefined;
  },
): Promise<DecisionOutcome> {
  if (why.reason === "own_request")
    return { outcome: "refused", reason: why.reason, askedAs: why.asked ?? "requester" };
  if (why.reason === "no_longer_named") {
    const now = why.now ?? approval.approvers;
    const members = new Map<string, string[]>();
    for (const group of new Set([...approval.approvers.groups, ...now.groups]))
      members.set(group, await deps.chat.groupMembers(group));
    return {
      outcome: "refused",
      reason: why.reason,
      policyId: approval.policy_id,
      stillNamed: stillNamed(approval.approvers, now, members),
    };
  }
  // Once its deadline gave it to the fallback, a first approver's click (on the old card, or one
  // that moved it just now) is late, not unauthorized; anyone else's is still unauthorized.
  if (approval.escalated_at && (await approvedBeforeFallback(deps, approval, userId)))
    return { outcome: "moved_on", to: approval.approvers };
  return { outcome: "refused", reason: why.reason };
}

/**
 * Checks a click without deciding, for Reject: a person who may not decide is told so before a
 * modal asks them for a reason nobody would use. Undefined means: ask for the reason.
 */
export async function checkApprovalClick(
  deps: RuntimeDeps,
  input: ClickInput,
): Promise<DecisionOutcome | undefined> {
  const check = await checkClick(deps, input);
  return "refused" in check ? check.refused : undefined;
}

/**
 * A human's click. Authorization is checked in code; the decision is taken once in SQL, on the
 * condition that the row is still as checked; the tool itself runs later on the worker, with
 * the approval as its idempotency key.
 */
export async function decideApproval(
  deps: RuntimeDeps,
  input: ClickInput & { reason?: string },
): Promise<DecisionOutcome> {
  const check = await checkClick(deps, input);
  if ("refused" in check) return check.refused;
  const approval = check.allowed;
  const reason = input.decision === "rejected" ? input.reason?.trim() || "no reason given" : null;
  const decided = await deps.db.transaction().execute(async (tx) => {
    const row = await approvalsDb.decideApproval(tx, approval.id, {
      status: input.decision,
      by: input.userId,
      reason,
      checkedApprovers: approval.approvers,
    });
    if (row) await resumeAfterDecision(deps, tx, row, { by: input.userId, reason });
    return row;
  });
  // The row moved on between the check and the update (another click decided it, its deadline
  // passed, or a sweep gave it to the fallback): the click is judged again on the row as it is
  // now. Each of those moves happens at most once, so this ends.
  if (!decided) return decideApproval(deps, input);
  deps.afterwards.run("update the approval card", () =>
    deliverOutbox(deps, { taskId: approval.task_id }),
  );
  return { outcome: "decided", status: input.decision };
}

/** Whether the person was among those who could decide before the fallback took the approval. */
async function approvedBeforeFallback(
  deps: RuntimeDeps,
  approval: ApprovalRow,
  userId: string,
): Promise<boolean> {
  return isAmong(deps, await approvalsDb.approversBeforeFallback(deps.db, approval), userId);
}

async function memberGroups(
  deps: RuntimeDeps,
  userId: string,
  groups: string[],
): Promise<string[]> {
  const found: string[] = [];
  for (const group of new Set(groups))
    if ((await deps.chat.groupMembers(group)).includes(userId)) found.push(group);
  return found;
}
