import type { Agent } from "./agents/directory.ts";
import type { HandBackNote, HandoffNote } from "./handoffs/note.ts";
import type { ChatMessage } from "./model.ts";
import { cutPoint, headOf } from "./text.ts";

/**
 * The system message: who the agent is (unless its instructions open by saying so), its instructions,
 * and the task's facts. No task line: the entry stint opens with the request itself, and a later
 * stint with a note that carries what is needed.
 */
export function systemMessage(
  agent: Agent,
  taskFacts: Record<string, unknown>,
): Extract<ChatMessage, { role: "system" }> {
  // A fact's key or value that holds a line break (a requester's text the model copied) goes on
  // indented, as a note's values do: it reads as part of the fact, never as a line of instructions.
  const facts = Object.entries(taskFacts)
    .map(([key, fact]) => value(`${key}=${typeof fact === "string" ? fact : JSON.stringify(fact)}`))
    .join("; ");
  const instructions = agent.instructions.trim();
  const lines = introduces(instructions, agent.name)
    ? [instructions]
    : [`You are ${agent.name}.`, instructions];
  if (facts) lines.push(`Facts: ${facts}`);
  return { role: "system", content: lines.join("\n") };
}

/** Instructions that open with "You are <name>" already say who the agent is, on every call. */
function introduces(instructions: string, name: string): boolean {
  const intro = `You are ${name}`;
  return instructions.startsWith(intro) && !/^[\p{L}\p{N}]/u.test(instructions.slice(intro.length));
}

/**
 * A value in a labelled message, its later lines indented: a requester's or a model's text that
 * holds a line such as "Inventory handed back: …" reads as part of its value, never as a label of
 * Baton's.
 */
function value(text: string): string {
  return text.replace(/\r\n|[\n\r\v\f\u0085\u2028\u2029]/g, "\n  ");
}

/** What the next agent reads instead of the transcript. */
export function renderHandoffNote(fromName: string, note: HandoffNote): string {
  const lines = [`Handoff from ${fromName}: ${value(note.summary)}`];
  if (note.reason) lines.push(`Why you: ${value(note.reason)}`);
  if (note.done.length) lines.push(`Done: ${value(note.done.join("; "))}`);
  lines.push(`Needed: ${value(note.needed)}`);
  if (note.unknowns.length) lines.push(`Unknown: ${value(note.unknowns.join("; "))}`);
  if (note.artifact) lines.push(`Open first: ${value(note.artifact)}`);
  if (note.urgency !== "normal" || note.deadline)
    lines.push(`Urgency: ${note.urgency}${note.deadline ? `, by ${value(note.deadline)}` : ""}`);
  return lines.join("\n");
}

/**
 * The agent that handed work over starts a new stint with the result. Its earlier stint is not
 * sent again, so the request comes first: the result alone does not say what was asked.
 */
export function renderHandBack(fromName: string, note: HandBackNote, request: string): string {
  return `Request: ${value(request)}\n${fromName} handed back: ${value(note.result)}`;
}

export function renderHumanReturn(
  humanId: string,
  instruction: string,
  originalRequest: string,
): string {
  return `${renderRequest(originalRequest)}\n${renderSentBack(humanId, instruction)}`;
}

/** The request a stint that a person opened begins with (see renderHumanReturn). */
export function renderRequest(originalRequest: string): string {
  return `Request: ${value(originalRequest)}`;
}

/** A person's instruction, handing the work to an agent (see renderHumanReturn). */
export function renderSentBack(humanId: string, instruction: string): string {
  return `A person (<@${humanId}>) sent this back to you: ${value(instruction)}`;
}

export function renderRequesterMessage(text: string): string {
  return text;
}

/** Short title for lists and cards: the first line of the request, cut at a word. */
export function taskTitle(text: string, max = 80): string {
  const line =
    text
      .replace(/<@[A-Z0-9]+>/g, "")
      // "ask <@U1> about 1042" reads "ask about 1042", not with two spaces.
      .replace(/[ \t]{2,}/g, " ")
      .trim()
      .split("\n")[0] ?? "";
  if (line.length <= max) return line || "(no text)";
  // Never half an emoji: Postgres would store its lone half as "�".
  const cut = headOf(line, max);
  let end = cutPoint(cut, Math.max(cut.lastIndexOf(" "), max / 2));
  // Never through Slack's markup (`<https://…|my order>`): half of it shows as raw text.
  const open = cut.lastIndexOf("<", end - 1);
  if (open >= 0 && cut.lastIndexOf(">", end - 1) < open) end = open;
  return `${cut.slice(0, end).trimEnd()}…`;
}
