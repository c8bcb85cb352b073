import type { Agent } from "../core/agents/directory.ts";
import type { ChatMessage, ModelReply } from "../core/model.ts";
import type { ChatIntent, Persona, RateLimitStop } from "../core/ports.ts";
import { headOf } from "../core/text.ts";
import type { OutboxMessage } from "../db/outbox.repository.ts";

/** Small builders shared by the use cases: what to say, and what the model reads back. */

export function personaOf(agent: Pick<Agent, "name" | "icon">): Persona {
  return { name: agent.name, icon: agent.icon };
}

export function post(
  task: { id: string },
  intent: ChatIntent,
  cardOf?: OutboxMessage["cardOf"],
): OutboxMessage {
  return cardOf ? { taskId: task.id, intent, cardOf } : { taskId: task.id, intent };
}

/** The thread is told the task failed, and why (with a rate limit, when a reply can pass it). */
export function failureNotice(
  task: { id: string; channel_id: string; thread_ts: string },
  reason: string,
  limit?: RateLimitStop,
): OutboxMessage {
  return post(task, {
    kind: "failure_notice",
    channel: task.channel_id,
    threadTs: task.thread_ts,
    taskId: task.id,
    reason,
    ...(limit && { limit }),
  });
}

/**
 * A card updated after a decision. A person can decide as soon as Slack shows the card, before its
 * ts is saved: without one, the update reads the ts when it is delivered (after the card's post),
 * and the channel the card was posted to.
 */
export function cardUpdate(
  task: { id: string },
  intent: Extract<ChatIntent, { kind: "approval_card" | "escalation_card" }>,
  card: NonNullable<OutboxMessage["updateOf"]>,
): OutboxMessage {
  return { taskId: task.id, intent, updateOf: card };
}

/** A person's reply in the task's thread, as the agent reads it: anyone but the requester is named. */
export function replyMessage(
  reply: { author_id: string; text: string },
  requesterId: string,
): ChatMessage {
  return {
    role: "user",
    content:
      reply.author_id === requesterId ? reply.text : `<@${reply.author_id}> wrote: ${reply.text}`,
  };
}

export function toolMessage(callId: string, content: unknown): ChatMessage {
  const text = typeof content === "string" ? content : JSON.stringify(content);
  // Tool results are data for the model, cut so one huge result cannot flood the context.
  return {
    role: "tool",
    tool_call_id: callId,
    content: text.length > 4_000 ? `${headOf(text, 4_000)}…` : text,
  };
}

export function assistantMessage(reply: ModelReply): ChatMessage {
  if (reply.toolCalls.length === 0) return { role: "assistant", content: reply.content ?? "" };
  return {
    role: "assistant",
    content: reply.content,
    tool_calls: reply.toolCalls.map((c) => ({
      id: c.id,
      type: "function",
      function: { name: c.name, arguments: c.arguments },
    })),
  };
}
