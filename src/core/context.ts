import type { Agent } from "./agents/directory.ts";
import type { HandBackNote, HandoffNote } from "./handoffs/note.ts";
import type { ChatMessage } from "./model.ts";

export interface TaskView {
  id: string;
  title: string;
  requesterId: string;
  facts: Record<string, unknown>;
}

/**
 * The system message: who the agent is, its instructions, and the task's facts.
 * The first line's shape ("You are X (agent id: y).") is a contract the scripted model relies on.
 */
export function systemMessage(
  agent: Agent,
  task: TaskView,
): Extract<ChatMessage, { role: "system" }> {
  const facts = Object.entries(task.facts)
    .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
    .join("; ");
  const lines = [
    `You are ${agent.name} (agent id: ${agent.id}).`,
    agent.instructions.trim(),
    `Task: ${task.title}`,
  ];
  if (facts) lines.push(`Facts: ${facts}`);
  return { role: "system", content: lines.join("\n") };
}

/** What the next agent reads instead of the transcript. */
export function renderHandoffNote(fromName: string, note: HandoffNote): string {
  const lines = [`Handed to you by ${fromName}: ${note.summary}`];
  if (note.done.length) lines.push(`Done: ${note.done.join("; ")}`);
  lines.push(`Needed: ${note.needed}`);
  if (note.unknowns.length) lines.push(`Unknown: ${note.unknowns.join("; ")}`);
  if (note.urgency !== "normal") lines.push(`Urgency: ${note.urgency}`);
  return lines.join("\n");
}

/**
 * The agent that handed work over starts a new stint with the result. The system message already
 * carries the task's title, so the request is repeated only when the title is a cut of it.
 */
export function renderHandBack(
  fromName: string,
  note: HandBackNote,
  task: { title: string; request: string },
): string {
  const result = `${fromName} handed back: ${note.result}`;
  return task.title === task.request.trim() ? result : `Request: ${task.request}\n${result}`;
}

export function renderHumanReturn(
  humanId: string,
  instruction: string,
  originalRequest: string,
): string {
  return `Request: ${originalRequest}\nA person (<@${humanId}>) sent this back to you: ${instruction}`;
}

export function renderRequesterMessage(text: string): string {
  return text;
}

/** Short title for lists and cards: the first line of the request, cut at a word. */
export function taskTitle(text: string, max = 80): string {
  const line =
    text
      .replace(/<@[A-Z0-9]+>/g, "")
      .trim()
      .split("\n")[0] ?? "";
  if (line.length <= max) return line || "(no text)";
  const cut = line.slice(0, max);
  return `${cut.slice(0, Math.max(cut.lastIndexOf(" "), max / 2))}…`;
}
