import type { Action } from "../core/dispatch.ts";
import { type EscalationNote, LANES } from "../core/handoffs/note.ts";
import type { RateLimitStop } from "../core/ports.ts";
import { ESCALATE } from "../core/tools/builtin.ts";
import { unusableReplyReasons } from "../db/ledger.repository.ts";
import { doneItems, startEscalation } from "./escalations.ts";
import { rateLimitStop, strikesReason } from "./failure-reasons.ts";
import { failureNotice } from "./messages.ts";
import type { Turn, TurnEffects } from "./turn.ts";

// A model's unusable replies in a row are strikes: the last fails the task and says why (or, for
// an agent that tried to escalate, a person hears of it).

/** Consecutive unusable model replies before the task stops and says so. */
const MAX_MODEL_ERRORS = 3;

/**
 * Whether this reply, should it be unusable, is the last strike: the turn must then write before
 * its statement (see commitTurn), so that the turns behind have landed when it reads why the
 * earlier replies failed, and so that an agent that tried to escalate can, as an escalation does.
 */
export function onLastStrike(turn: Turn): boolean {
  return turn.task.model_errors + 1 >= MAX_MODEL_ERRORS;
}

function refusedEscalations(turn: Turn) {
  return turn.actions.filter(
    (a): a is Extract<Action, { kind: "rejected" }> => a.kind === "rejected" && a.name === ESCALATE,
  );
}

export async function settleModelErrors(fx: TurnEffects): Promise<void> {
  const { task } = fx.turn;
  // The reply handed the task over: usable work, and the next agent's replies count from zero.
  // So is a reply whose write ran: failing the task on it would tell the thread nothing was done.
  // The turn limit still stops a model that keeps pairing a write with a refused call.
  const acted = fx.toolCalls.some((c) => c.status === "done" && c.toolClass !== "read");
  if (fx.modelErrors === 0 || fx.changes.owner || acted) {
    if (task.model_errors !== 0) fx.changes.modelErrors = 0;
    return;
  }
  const total = task.model_errors + 1;
  fx.changes.modelErrors = total;
  if (total < MAX_MODEL_ERRORS || fx.changes.status) return;
  // The agent wanted a person and could not write the note: a person hears of it, not a failure.
  const refused = refusedEscalations(fx.turn);
  if (refused.length > 0) {
    fx.changes.modelErrors = 0;
    await startEscalation(fx, { note: await noteForUnreadable(fx, refused), reason: "agent" });
    return;
  }
  const causes = await strikeCauses(fx, total);
  const limits = fx.deps.agents.file.policies.rate_limits.tools;
  const limit = rateLimitStop(causes, limits, fx.audits, fx.deps.clock.now());
  failTask(fx, strikesReason(total, causes), { causes }, limit);
}

/** What each of the `total` unusable replies did wrong, oldest first: the earlier ones as audited. */
async function strikeCauses(fx: TurnEffects, total: number): Promise<string[][]> {
  const earlier = Map.groupBy(
    await unusableReplyReasons(fx.tx, fx.turn.task.id, total - 1),
    (row) => row.step,
  );
  const now = fx.audits.flatMap((a) =>
    a.kind === "model_error" || a.kind === "tool_refused" ? [String(a.data?.reason)] : [],
  );
  return [...[...earlier.values()].map((rows) => rows.map((row) => row.reason)), now];
}

/**
 * The task fails with this turn, and its thread and audit say why: `reason` in words for the
 * people in the thread, `detail` (the model server's own terms) for the audit trail and the log.
 */
export function failTask(
  fx: TurnEffects,
  reason: string,
  detail: Record<string, unknown>,
  limit?: RateLimitStop,
): void {
  const { task } = fx.turn;
  fx.changes.status = "failed";
  fx.changes.failureReason = reason;
  fx.outbox.push(failureNotice(task, reason, limit));
  fx.audits.push({
    taskId: task.id,
    actor: { kind: "system", id: "baton" },
    kind: "task_failed",
    data: { reason, ...detail },
  });
  fx.afterCommit.push(() => {
    fx.deps.metrics.tasksFinished.inc({ outcome: "failed" });
    // As a halt tells the operator: a model that cannot be used is often their setup.
    fx.deps.log.warn({ taskId: task.id, reason, ...detail }, "task failed");
  });
}

/** The note Baton writes itself for an escalation whose note it refused: only what it knows. */
async function noteForUnreadable(
  fx: TurnEffects,
  refused: Extract<Action, { kind: "rejected" }>[],
): Promise<EscalationNote> {
  const { task } = fx.turn;
  const named = refused.map((a) => laneIn(a.rawArgs)).findLast((lane) => lane !== undefined);
  return {
    requester: `<@${task.requester_id}>`,
    summary: task.title,
    // The turns behind have landed (see onLastStrike): their writes are read here.
    done: await doneItems(fx.tx, task.id),
    reason: "the agent asked for a person but its note could not be read",
    urgency: "normal",
    lane: named ?? "owner_escalation",
    recommended_action: "Read the thread, then take the task over or send it back to an agent.",
    facts: task.facts as EscalationNote["facts"],
  };
}

function laneIn(rawArgs: string): EscalationNote["lane"] | undefined {
  try {
    const lane: unknown = (JSON.parse(rawArgs) as { lane?: unknown } | null)?.lane;
    return LANES.find((l) => l === lane);
  } catch {
    return undefined;
  }
}
