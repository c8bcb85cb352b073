import * as humans from "../db/humans.repository.ts";
import { appendConversation, audit, settleToolCall } from "../db/ledger.repository.ts";
import { lockHeldTask, updateTask } from "../db/tasks.repository.ts";
import type { RuntimeDeps } from "./deps.ts";
import { toolMessage } from "./messages.ts";
import { executeTool } from "./tool-actions.ts";

/**
 * On the worker, before the agent's next model call: run approved calls exactly once (the approval's
 * key makes a second run impossible) and answer each parked call in the conversation. Returns
 * whether it settled any.
 */
export async function settleDecidedApprovals(deps: RuntimeDeps, taskId: string): Promise<boolean> {
  return deps.db.transaction().execute(async (tx) => {
    // Only while this run holds the task; and what is left to settle is read under the lock, so a
    // run that took the task over and settled them first is seen here.
    const task = await lockHeldTask(tx, taskId, deps.workerId, deps.leaseMs);
    if (!task) return false;
    const decided = await humans.decidedUnsettled(tx, taskId);
    if (decided.length === 0) return false;
    for (const d of decided) {
      let content: unknown;
      let status: "done" | "failed" | "rejected" | "expired" | "withdrawn";
      const allowedBy = d.decided_by ? `approval:${d.id} by ${d.decided_by}` : null;
      if (d.status === "approved") {
        const tool = deps.tools.get(d.tool);
        if (!tool) throw new Error(`approved tool ${d.tool} is no longer registered`);
        const outcome = await executeTool(
          tx,
          tool,
          d.args,
          { idempotencyKey: d.tool_call_id, taskId, agentId: d.agent_id },
          deps.metrics,
        );
        ({ status } = outcome);
        content = outcome.result;
      } else if (d.status === "rejected") {
        status = "rejected";
        content = {
          error: `A person rejected this call. Their reason: "${d.reason}". Do not call ${d.tool} again for this request; tell the requester what happened, or propose something else.`,
        };
      } else if (d.status === "withdrawn") {
        status = "withdrawn";
        content = {
          error: `This call was not run: the task stopped before anyone decided on it. Do not assume it ran; ask for it again only if it is still needed.`,
        };
      } else {
        status = "expired";
        content = {
          error: `Nobody approved this call in time, so it was not run. Do not retry it; tell the requester it needs a person.`,
        };
      }
      await settleToolCall(tx, d.tool_call_id, { status, result: content, allowedBy });
      await appendConversation(tx, [
        {
          taskId,
          stintNo: task.stint_no,
          stepNo: task.step_no,
          message: toolMessage(d.model_call_id, content),
        },
      ]);
      await audit(tx, {
        taskId,
        actor: { kind: "agent", id: d.agent_id },
        kind: "tool_call",
        data: {
          tool: d.tool,
          args: d.args,
          status,
          result: content,
          allowed_by: allowedBy,
          idempotency_key: d.tool_call_id,
        },
      });
    }
    await updateTask(tx, taskId, { stepNo: task.step_no + 1 });
    return true;
  });
}
