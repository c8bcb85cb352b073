import { answerParts } from "../core/answer-parts.ts";
import { renderHandBack, renderHandoffNote } from "../core/context.ts";
import { type Action, MAX_CALLS_PER_REPLY, type RejectReason } from "../core/dispatch.ts";
import type { ChatMessage } from "../core/model.ts";
import { headOf } from "../core/text.ts";
import { ESCALATE, HAND_BACK, transferTarget } from "../core/tools/builtin.ts";
import { startEscalation } from "./escalations.ts";
import { WITHHELD_REASON } from "./failure-reasons.ts";
import { personaOf, post, toolMessage } from "./messages.ts";
import { failTask } from "./model-strikes.ts";
import { answerRepeat, runToolAction } from "./tool-actions.ts";
import type { TurnEffects } from "./turn.ts";

// What each action of a model's reply adds to its turn's effects, before the turn writes them.

export async function applyAction(
  fx: TurnEffects,
  action: Action,
  index: number,
): Promise<boolean> {
  const { task, agent } = fx.turn;
  switch (action.kind) {
    case "tool":
      return runToolAction(fx, action, index);
    case "repeat":
      answerRepeat(fx, action);
      return false;
    case "rejected":
      return rejectCall(fx, action);
    case "too_many":
      return refuseTooMany(fx, action);
    case "transfer":
    case "hand_back":
      return handOver(fx, action);
    case "escalate":
      await startEscalation(fx, { note: action.note, reason: "agent" });
      return true;
    case "final":
      fx.changes.status = "done";
      for (const text of answerParts(action.text))
        fx.outbox.push(
          post(task, {
            kind: "agent_reply",
            channel: task.channel_id,
            threadTs: task.thread_ts,
            persona: personaOf(agent),
            text,
          }),
        );
      fx.audits.push({
        taskId: task.id,
        actor: { kind: "agent", id: agent.id },
        kind: "answer",
        // All of it: an answer too long for the thread is cut there with a note sending the
        // reader here (`npm run audit --format json`) for the rest.
        data: { text: action.text },
      });
      fx.afterCommit.push(() => fx.deps.metrics.tasksFinished.inc({ outcome: "answered" }));
      return true;
    case "empty":
    case "cut_off":
    case "unreadable":
      return unusableReply(fx, action);
    case "withheld":
      // Asked again, the model would meet the same filter: the task stops, and says why.
      failTask(fx, WITHHELD_REASON, { finish_reason: "content_filter" });
      return true;
  }
}

/** What the model is told, and the audit says, of a reply that could not be used at all. */
const UNUSABLE = {
  empty: {
    nudge: "Your last reply was empty. Answer the requester, or call one of your tools.",
    error: "empty reply",
  },
  cut_off: {
    nudge:
      "Your last reply was cut off at your output limit before it was complete, and was not used. Answer again, shorter.",
    error: "reply cut off at the output limit",
  },
  unreadable: {
    nudge:
      "The model server could not read the tool call in your last reply, so it was not run. Call the tool again with valid JSON arguments, or answer the requester.",
    error: "the model server could not read the model's tool call",
  },
} as const;

const NUDGES: ReadonlySet<string> = new Set(Object.values(UNUSABLE).map((words) => words.nudge));

/**
 * Baton's own word to the model after an unusable reply: written as a user message, as the model
 * must read it, but no person's, so the turn limit counts on through it (see caps.ts).
 */
export function isNudge(message: ChatMessage): boolean {
  return message.role === "user" && NUDGES.has(message.content);
}

function unusableReply(
  fx: TurnEffects,
  action: Extract<Action, { kind: "empty" | "cut_off" | "unreadable" }>,
): boolean {
  const { task, agent } = fx.turn;
  const words = UNUSABLE[action.kind];
  fx.modelErrors++;
  fx.conversation.push({ role: "user", content: words.nudge });
  fx.audits.push({
    taskId: task.id,
    actor: { kind: "agent", id: agent.id },
    kind: "model_error",
    data: {
      error: words.error,
      // What the last strike's reason is built from (see settleModelErrors in model-strikes.ts).
      reason: action.kind,
      step: fx.stepNo,
      ...(action.kind === "unreadable" && { detail: action.detail }),
    },
  });
  return false;
}

const REFUSED_CALLS: ReadonlySet<RejectReason> = new Set(["not_allowed", "invalid_arguments"]);

function rejectCall(fx: TurnEffects, action: Extract<Action, { kind: "rejected" }>): boolean {
  const { task, agent } = fx.turn;
  // A refused tool is an unusable reply too: a model that insists on one must not loop unbounded.
  fx.modelErrors++;
  fx.conversation.push(toolMessage(action.callId, { error: action.message }));
  fx.audits.push({
    taskId: task.id,
    actor: { kind: "agent", id: agent.id },
    // A call of a tool the agent has, with arguments its schema refuses, is a refused call like
    // one outside the allowlist: an event, not a tool_calls row, as it never reached the tool and
    // took none of its idempotency keys. A made-up tool, or a hand-back to nobody, is no call.
    kind: REFUSED_CALLS.has(action.reason) ? "tool_refused" : "model_error",
    data: {
      tool: action.name,
      reason: action.reason,
      message: action.message,
      arguments: headOf(action.rawArgs, 2000),
      step: fx.stepNo,
    },
  });
  // A label per name the model made up would grow /metrics without bound: those count together.
  const known =
    fx.deps.tools.has(action.name) ||
    action.name === HAND_BACK ||
    action.name === ESCALATE ||
    transferTarget(agent, action.name) !== undefined;
  const tool = known ? action.name : "(unknown)";
  fx.afterCommit.push(() => fx.deps.metrics.toolCalls.inc({ tool, outcome: action.reason }));
  return false;
}

/** The calls past MAX_CALLS_PER_REPLY: each answered, one unusable reply, one audit event. */
function refuseTooMany(fx: TurnEffects, action: Extract<Action, { kind: "too_many" }>): boolean {
  const { task, agent } = fx.turn;
  fx.modelErrors++;
  const message = `Not run: one reply may ask for ${MAX_CALLS_PER_REPLY} tool calls at most. Ask again for the ones you still need, a few at a time.`;
  for (const call of action.calls)
    fx.conversation.push(toolMessage(call.callId, { error: message }));
  fx.audits.push({
    taskId: task.id,
    actor: { kind: "agent", id: agent.id },
    kind: "model_error",
    data: {
      reason: "too_many_calls",
      message,
      not_run: action.calls.length,
      tools: [...new Set(action.calls.map((c) => c.name))].slice(0, 20),
      step: fx.stepNo,
    },
  });
  return false;
}

async function handOver(
  fx: TurnEffects,
  action: Extract<Action, { kind: "transfer" | "hand_back" }>,
): Promise<boolean> {
  const { task, agent } = fx.turn;
  const to = fx.deps.agents.require(action.to);
  const stack = [...task.handback_stack];
  if (action.kind === "transfer") stack.push(agent.id);
  // Back to `to`, past any agent above it that is no longer in the agents file.
  else stack.splice(stack.lastIndexOf(to.id));
  fx.handoffs.push({
    taskId: task.id,
    stepNo: fx.stepNo,
    kind: action.kind,
    from: { kind: "agent", id: agent.id },
    to: { kind: "agent", id: to.id },
    note: action.note,
  });
  fx.changes = {
    ...fx.changes,
    owner: { kind: "agent", id: to.id },
    hop: true,
    newStint: true,
    handbackStack: stack,
    facts: { ...task.facts, ...action.note.facts },
  };
  fx.nextStint = {
    role: "user",
    content:
      action.kind === "transfer"
        ? renderHandoffNote(agent.name, action.note)
        : renderHandBack(agent.name, action.note, task.request_text),
  };
  fx.outbox.push(
    post(task, {
      kind: "handoff_card",
      channel: task.channel_id,
      threadTs: task.thread_ts,
      persona: personaOf(agent),
      fromName: agent.name,
      toName: to.name,
      handoff:
        action.kind === "transfer"
          ? { kind: "transfer", note: action.note }
          : { kind: "hand_back", note: action.note },
    }),
  );
  fx.audits.push({
    taskId: task.id,
    actor: { kind: "agent", id: agent.id },
    kind: "handoff",
    data: { kind: action.kind, to: to.id, note: action.note },
  });
  fx.afterCommit.push(() => {
    fx.deps.metrics.handoffs.inc({ kind: action.kind, from: agent.id, to: to.id });
    const ids = { taskId: task.id, threadTs: task.thread_ts };
    fx.deps.log.info({ ...ids, from: agent.id, to: to.id, kind: action.kind }, "task handed over");
  });
  return true;
}
