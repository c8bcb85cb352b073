import type { EscalationNote } from "../../core/handoffs/note.ts";
import {
  clip,
  isChannelId,
  isGroupId,
  isUserId,
  mention,
  mentionEach,
  slackDate,
  truncate,
} from "../mrkdwn.ts";
import { typedText } from "../typed-text.ts";
import {
  type Block,
  type Button,
  bullets,
  button,
  context,
  fallback,
  field,
  fieldsSection,
  keyValueBlocks,
  message,
  percent,
  roomBeside,
  type SlackMessage,
  section,
  stableEntries,
  urgencyLabel,
} from "./blocks.ts";

export const ESCALATION_TAKE_OVER = "escalation_take_over";
export const ESCALATION_SEND_BACK = "escalation_send_back";

export interface EscalationOwner {
  kind: "user" | "group" | "people" | "channel";
  id: string;
}

export type EscalationState =
  | { status: "open" }
  /** Until `closed` (`/baton done`), the person who took it over may still hand it to an agent. */
  | { status: "taken_over"; by: string; at: Date; closed?: { by: string; at: Date } }
  | { status: "sent_back"; by: string; at: Date; toName: string; instruction: string }
  /** `to`: a Slack user, user group or channel ID, or several people's, joined by commas. */
  | { status: "reassigned"; to: string; at: Date };

export interface EscalationCardInput {
  escalationId: string;
  /** The agent that escalated (display name). */
  fromName: string;
  owner: EscalationOwner;
  note: EscalationNote;
  /**
   * The task's requester. A note Baton writes itself (a cap, an unreadable note) names them as
   * `<@ID>`, which the card shows as a mention rather than as escaped text; only this ID, so a
   * model's note cannot page anyone.
   */
  requesterId?: string;
  state: EscalationState;
}

const LANES: Record<string, string> = {
  support: "Support",
  sales: "Sales",
  operations: "Operations",
  owner_escalation: "Owner escalation",
};

/** The escalation note at a glance, with the two ways out while it is open. */
export function escalationCard(input: EscalationCardInput): SlackMessage {
  const { note } = input;
  const urgency = note.deadline
    ? `${urgencyLabel(note.urgency)}, by ${clip(note.deadline, 100)}`
    : urgencyLabel(note.urgency);
  const confidence = percent(note.confidence);
  const glance = [
    requesterField(note.requester, input.requesterId),
    `*Urgency*\n${urgency}`,
    ...(confidence ? [`*Confidence*\n${confidence}`] : []),
    `*Lane*\n${LANES[note.lane] ?? clip(note.lane, 40)}`,
  ];
  if (note.artifact) glance.push(field("Open first", note.artifact, 800));

  const why = [`*Why:* ${clip(note.reason, 800)}`];
  if (note.done.length > 0) why.push(`*Done:*\n${bullets(note.done, 300, 900)}`);
  why.push(`*Recommended:* ${clip(note.recommended_action, 800)}`);

  const head: Block[] = [
    section(
      `🚨 *Escalation* from *${clip(input.fromName, 80)}* to ${ownerMention(input.owner)}\n` +
        typedText(note.summary, 1500),
    ),
    fieldsSection(glance),
    section(why.join("\n")),
  ];
  const tail = stateBlocks(input.escalationId, input.state);
  // The facts get the room the rest of the card leaves; a line counts and names those left out.
  // By name: the card updated from the stored note lists them as the first one did.
  const facts = keyValueBlocks(
    stableEntries(note.facts),
    1,
    "facts",
    roomBeside([...head, ...tail]),
  );
  const blocks = [...head, ...facts.blocks];
  if (facts.rest) blocks.push(context([facts.rest]));
  blocks.push(...tail);

  const text = fallback(`Escalation from ${input.fromName}: ${note.summary}`);
  return message(text, blocks, textOnly(text, input.state));
}

/**
 * Without its blocks an open card has no buttons, and only they take an escalation over or send
 * it back: the text says so. Whoever took it over may still name an agent in the thread.
 */
function textOnly(text: string, state: EscalationState): string {
  if (state.status === "open")
    return `${text}\n⚠️ Slack refused to show this escalation card, so it has no "Take it over" / "Send back" buttons, and there is no other way to take it over in Slack.`;
  if (state.status === "taken_over" && !state.closed)
    return `${text}\n✋ Taken over by ${mention(state.by)}: to hand it to an agent, name the agent first in a reply here ("@Baton billing: …"), or close it with \`/baton done\` and a link to this card.`;
  return text;
}

function stateBlocks(escalationId: string, state: EscalationState): Block[] {
  switch (state.status) {
    case "open":
      return [
        actions([
          button({
            text: "Take it over",
            actionId: ESCALATION_TAKE_OVER,
            value: escalationId,
            style: "primary",
          }),
          button({
            text: "Send back to an agent",
            actionId: ESCALATION_SEND_BACK,
            value: escalationId,
          }),
        ]),
      ];
    case "taken_over": {
      const line = `✋ Taken over by ${mention(state.by)} ${slackDate(state.at)}`;
      if (state.closed)
        return [
          context([
            `${line} · ✅ marked done by ${mention(state.closed.by)} ${slackDate(state.closed.at)}`,
          ]),
        ];
      // The same modal as an open card's: only the person holding the work may use it.
      return [
        context([
          `${line} · hand it to an agent below, or close it once finished with \`/baton done\` and a link to this card`,
        ]),
        actions([
          button({
            text: "Hand it to an agent",
            actionId: ESCALATION_SEND_BACK,
            value: escalationId,
          }),
        ]),
      ];
    }
    case "sent_back": {
      const line = `↩️ Sent back to *${clip(state.toName, 80)}* by ${mention(state.by)} ${slackDate(state.at)}`;
      return [context([truncate(`${line}: ${clip(state.instruction, 1000)}`, 2000)])];
    }
    case "reassigned":
      return [context([`➡️ Reassigned to ${mentionEach(state.to)} ${slackDate(state.at)}`])];
  }
}

function requesterField(requester: string, requesterId: string | undefined): string {
  const named = requesterId && isUserId(requesterId) && requester.trim() === `<@${requesterId}>`;
  return named ? `*Requester*\n${mention(requesterId)}` : field("Requester", requester, 500);
}

function actions(elements: Button[]): Block {
  return { type: "actions", elements };
}

/** Mentions only an ID of the kind the config says it is; anything else stays plain text. */
function ownerMention(owner: EscalationOwner): string {
  if (owner.kind === "people")
    return owner.id
      .split(",")
      .map((id) => ownerMention({ kind: isGroupId(id) ? "group" : "user", id }))
      .join(", ");
  const valid =
    (owner.kind === "user" && isUserId(owner.id)) ||
    (owner.kind === "group" && isGroupId(owner.id)) ||
    (owner.kind === "channel" && isChannelId(owner.id));
  return valid ? mention(owner.id) : `\`${clip(owner.id, 40)}\``;
}
