import type { HandBackNote, HandoffNote } from "../../core/handoffs/note.ts";
import { clip } from "../mrkdwn.ts";
import { typedText } from "../typed-text.ts";
import {
  type Block,
  bullets,
  context,
  fallback,
  keyValueBlocks,
  message,
  percent,
  roomBeside,
  type SlackMessage,
  section,
  stableEntries,
  urgencyLabel,
} from "./blocks.ts";

/** A baton pass between agents, posted in the task's thread. Names are display names. */
export type HandoffCardInput =
  | { fromName: string; toName: string; kind: "transfer"; note: HandoffNote }
  | { fromName: string; toName: string; kind: "hand_back"; note: HandBackNote };

type Transfer = Extract<HandoffCardInput, { kind: "transfer" }>;
type HandBack = Extract<HandoffCardInput, { kind: "hand_back" }>;

const NAME_MAX = 80;

export function handoffCard(input: HandoffCardInput): SlackMessage {
  return input.kind === "transfer" ? transferCard(input) : handBackCard(input);
}

function transferCard({ fromName, toName, note }: Transfer): SlackMessage {
  const meta = [`🔁 *${clip(fromName, NAME_MAX)}* → *${clip(toName, NAME_MAX)}*`];
  meta.push(
    note.deadline
      ? `${urgencyLabel(note.urgency)}, by ${clip(note.deadline, 100)}`
      : urgencyLabel(note.urgency),
  );
  const confidence = percent(note.confidence);
  if (confidence) meta.push(`confidence ${confidence}`);

  const next = [`*Next:* ${clip(note.needed, 800)}`];
  if (note.reason) next.push(`*Why:* ${clip(note.reason, 300)}`);
  if (note.artifact) next.push(`*Open first:* ${clip(note.artifact, 300)}`);
  if (note.done.length > 0) next.push(`*Done:*\n${bullets(note.done, 300, 1000)}`);
  if (note.unknowns.length > 0) next.push(`*Unknown:*\n${bullets(note.unknowns, 300, 800)}`);

  const head: Block[] = [context([meta.join(" · ")]), section(typedText(note.summary, 1500))];
  const tail = [section(next.join("\n"))];
  const blocks = [...head, ...factBlocks(note.facts, [...head, ...tail]), ...tail];
  return message(fallback(`${fromName} handed this to ${toName}: ${note.summary}`), blocks);
}

function handBackCard({ fromName, toName, note }: HandBack): SlackMessage {
  const head: Block[] = [
    context([`↩️ *${clip(fromName, NAME_MAX)}* handed back to *${clip(toName, NAME_MAX)}*`]),
    section(clip(note.result, 2500)),
  ];
  const blocks = [...head, ...factBlocks(note.facts, head)];
  return message(fallback(`${fromName} handed back to ${toName}: ${note.result}`), blocks);
}

/** One fields section (10 facts at most) in the room beside the rest of the card, and a line naming the facts left out. */
function factBlocks(facts: Record<string, string | number | boolean>, beside: Block[]): Block[] {
  const { blocks, rest } = keyValueBlocks(stableEntries(facts), 1, "facts", roomBeside(beside));
  return rest ? [...blocks, context([rest])] : blocks;
}
