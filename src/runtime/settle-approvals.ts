import * as approvalsDb from "../db/approvals.repository.ts";
import type { Tx } from "../db/database.ts";
import {
  appendConversation,
  audit,
  type SettledStatus,
  settleToolCall,
} from "../db/ledger.repository.ts";
import { enqueueOutbox, type OutboxMessage } from "../db/outbox.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import { lockHeldTask, updateTask } from "../db/tasks.repository.ts";
import { approvalCardUpdate } from "./approval-deadline.ts";
import { type NotRunnable, notRunnable } from "./cancelled-approvals.ts";
import type { RuntimeDeps } from "./deps.ts";
import { toolMessage } from "./messages.ts";
import { deliverOutbox } from "./outbox.ts";
import { executeTool } from "./tool-actions.ts";

/**
 * On the worker, before the agent's next model call: run approved calls exactly once (the approval's
 * key makes a second run impossible) and answer each parked call in the conversation. Returns
 * whether it settled any. The card of an approved call that did not run is updated to say so,
 * after `flush` (the run's own posts, which must not be sent twice).
 */
export async function settleDecidedApprovals(
  deps: RuntimeDeps,
  taskId: string,
  flush: () => Promise<void>,
): Promise<boolean> {
  const settled: Settled[] = [];
  const cards: OutboxMessage[] = [];
  const any = await deps.db.transaction().execute(async (tx) => {
    // Only while this run holds the task; and what is left to settle is read under the lock, so a
    // run that took the task over and settled them first is seen here.
    const task = await lockHeldTask(tx, taskId, deps.workerId, deps.leaseMs);
    if (!task) return false;
    const decided = await approvalsDb.decidedUnsettled(tx, taskId);
    if (decided.length === 0) return false;
    for (const d of decided) {
      const call = await settleCall(deps, tx, task, d);
      settled.push(call);
      if (call.card) cards.push(call.card);
    }
    await updateTask(tx, taskId, { stepNo: task.step_no + 1 });
    await enqueueOutbox(tx, cards);
    return true;
  });
  // Counted once committed, as the calls run on the agent's own autonomy are.
  for (const call of settled) deps.metrics.toolCalls.inc({ tool: call.tool, outcome: call.status });
  if (any && cards.length > 0) {
    await flush();
    await deliverOutbox(deps, { taskId, holdsLease: true });
  }
  return any;
}

type Decided = Awaited<ReturnType<typeof approvalsDb.decidedUnsettled>>[number];

/** What a decided call came to: `content` is the agent's answer; `card`, its card's update. */
type Outcome = { status: SettledStatus; content: unknown; card?: OutboxMessage };
type Settled = Outcome & { tool: string };

/** One decided call: run if approved (once: the approval is its key), and answered. */
async function settleCall(deps: RuntimeDeps, tx: Tx, task: TaskRow, d: Decided): Promise<Settled> {
  // Only an approval allows a call: the person who rejected one is named as such, not here.
  const allowedBy =
    d.status === "approved" && d.decided_by ? `approval:${d.id} by ${d.decided_by}` : null;
  const outcome = await outcomeOf(deps, tx, task, d);
  await answerParkedCall(tx, task, d, {
    status: outcome.status,
    result: outcome.content,
    allowedBy,
    decidedBy: d.decided_by,
  });
  return { ...outcome, tool: d.tool };
}

async function outcomeOf(deps: RuntimeDeps, tx: Tx, task: TaskRow, d: Decided): Promise<Outcome> {
  const tool = deps.tools.get(d.tool);
  const gone = d.status === "approved" && notRunnable(deps, d);
  if (gone) return notRunAfterApproval(deps, tx, task, d, gone);
  if (d.status === "approved" && tool) {
    const outcome = await executeTool(
      tx,
      tool,
      d.args,
      { idempotencyKey: d.tool_call_id, taskId: task.id, agentId: d.agent_id },
      deps.metrics,
    );
    return { status: outcome.status, content: outcome.result };
  }
  return notApproved(d);
}

/**
 * The operator changed the agents file between the click and now (a reload): the agent's role as
 * it is now decides, and the agent must not think the call ran.
 */
async function notRunAfterApproval(
  deps: RuntimeDeps,
  tx: Tx,
  task: TaskRow,
  d: Decided,
  gone: NotRunnable,
): Promise<Outcome> {
  deps.log.warn({ taskId: task.id, tool: d.tool, why: gone }, "an approved call was not run");
  // The card said "Approved" at the click; it now says the call was not run.
  const at = (d.decided_at ?? new Date()).toISOString();
  const by = d.decided_by ?? "";
  const card = await approvalCardUpdate(deps, tx, task, d, {
    status: "approved",
    by,
    at,
    notRun: true,
  });
  return {
    // Not "failed": the tool never saw it, and the person's approval still stands as theirs.
    status: "not_run",
    content: {
      error: `A person approved this call, but it was not run: ${TOLD_AGENT[gone](d.tool)}. Tell the requester it could not be done, or propose something else.`,
    },
    card,
  };
}

/** A call that was not approved: rejected, cancelled, withdrawn or expired. */
function notApproved(d: Decided): Outcome {
  if (d.status === "rejected")
    return {
      status: "rejected",
      content: {
        error: `A person rejected this call. Their reason: "${d.reason}". Do not call ${d.tool} again for this request; tell the requester what happened, or propose something else.`,
      },
    };
  // Cancelled before anyone decided (cancelled-approvals.ts): its card says so already.
  if (d.status === "cancelled")
    return {
      status: "not_run",
      content: {
        error: `This call was not run, and nobody can approve it now: ${d.reason}. Tell the requester it could not be done, or propose something else.`,
      },
    };
  if (d.status === "withdrawn") return { status: "withdrawn", content: WITHDRAWN_RESULT };
  return {
    status: "expired",
    content: {
      error: `Nobody approved this call in time, so it was not run. Do not retry it; tell the requester it needs a person.`,
    },
  };
}

/** Why an approved call did not run, as its agent is told. */
const TOLD_AGENT: Record<NotRunnable, (tool: string) => string> = {
  not_its_tool: (tool) => `${tool} is no longer one of your tools`,
  shadow: () => "you are in shadow mode now, and propose writes only",
};

/** What the agent is told of a parked call its stopped task took back from the people asked. */
export const WITHDRAWN_RESULT = {
  error:
    "This call was not run: the task stopped before anyone decided on it. Do not assume it ran; ask for it again only if it is still needed.",
};

/** A call parked for approval, as its approval row remembers it. */
type ParkedCall = {
  tool: string;
  args: unknown;
  tool_call_id: string;
  model_call_id: string;
  agent_id: string;
};

/**
 * Ends a parked call: its row, its answer in the conversation (the tool message the model expects
 * after its own call), and the audit line.
 */
export async function answerParkedCall(
  tx: Tx,
  task: Pick<TaskRow, "id" | "stint_no" | "step_no">,
  call: ParkedCall,
  settled: {
    status: SettledStatus;
    result: unknown;
    allowedBy: string | null;
    /** The person who decided on it, whatever they decided. */
    decidedBy?: string | null;
  },
): Promise<void> {
  await settleToolCall(tx, call.tool_call_id, settled);
  await appendConversation(tx, [
    {
      taskId: task.id,
      stintNo: task.stint_no,
      stepNo: task.step_no,
      message: toolMessage(call.model_call_id, settled.result),
    },
  ]);
  await audit(tx, {
    taskId: task.id,
    actor: { kind: "agent", id: call.agent_id },
    kind: "tool_call",
    data: {
      tool: call.tool,
      args: call.args,
      status: settled.status,
      result: settled.result,
      allowed_by: settled.allowedBy,
      ...(settled.decidedBy && { decided_by: settled.decidedBy }),
      idempotency_key: call.tool_call_id,
    },
  });
}
