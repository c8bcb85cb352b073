import { cutPoint } from "../core/text.ts";

/**
 * Pure text helpers for Slack surfaces. Customer and model text goes through `clip` (mrkdwn) or
 * `plainText` (plain_text) before it reaches a block, so it can neither notify, link nor break a card.
 *
 * Lengths are counted in UTF-16 code units (JavaScript's `length`) and cuts fall on code point
 * boundaries: Slack does not say which unit it counts, and code units are never fewer than code points.
 */

// Block Kit limits (https://docs.slack.dev/reference/block-kit).
export const SECTION_TEXT_MAX = 3000;
export const FIELD_TEXT_MAX = 2000;
export const FIELDS_PER_SECTION = 10;
export const HEADER_MAX = 150;
export const BUTTON_TEXT_MAX = 75;
export const BUTTON_VALUE_MAX = 2000;
export const ACTION_ID_MAX = 255;
export const BLOCK_ID_MAX = 255;
export const BLOCKS_PER_MESSAGE = 50;
export const BLOCKS_PER_VIEW = 100;
export const CONTEXT_ELEMENTS_MAX = 10;
export const ACTIONS_ELEMENTS_MAX = 25;
export const MESSAGE_TEXT_MAX = 40000;
export const MODAL_TITLE_MAX = 24;
export const PRIVATE_METADATA_MAX = 3000;
export const CALLBACK_ID_MAX = 255;
export const OPTION_TEXT_MAX = 75;
export const OPTION_VALUE_MAX = 150;
export const OPTIONS_MAX = 100;
export const INPUT_LABEL_MAX = 2000;
export const PLACEHOLDER_MAX = 150;
/**
 * Text across all of a message's blocks. Slack refuses more than about 12,000 characters in all
 * (`msg_blocks_too_long`, undocumented: slackapi/bolt-js#2509, #2867; one message was refused at
 * 11,341), and escaping only grows text: builders keep well under, counted after escaping.
 */
export const BLOCKS_TEXT_BUDGET = 10_000;
/** Notification fallback: long enough to say what happened, short enough for a push preview. */
export const FALLBACK_TEXT_MAX = 300;

export const ELLIPSIS = "…";
// Zero-width joiner: "@\u200Dchannel" reads as "@channel" but Slack does not treat it as a mention.
const ZWJ = "\u200D";
// Every "@here…" is defused, "@herea" too: a cut (clip, a section split) can drop the letter after.
const BROADCAST = /@(channel|here|everyone)/giu;
const ENTITY_AT = /^&(?:amp|lt|gt);/;
// Bidi embeddings, overrides and isolates: one left open in a customer's title reverses the display
// of Baton's own words after it on the line ("owned by …"). Right-to-left text needs none of them.
const BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069]/gu;

/**
 * Escapes `&`, `<`, `>`, defuses bare broadcast words and drops bidi controls, so the text renders
 * as typed and cannot reorder what follows it.
 */
export function escapeMrkdwn(text: string): string {
  return text
    .replace(BIDI_CONTROLS, "")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(BROADCAST, `@${ZWJ}$1`);
}

/**
 * Slack sends message text with `&`, `<`, `>` escaped (`&amp;`, `&lt;`, `&gt;`): decoded once at the
 * boundary, so the text is stored as typed and escaped once on its way back out.
 */
export function unescapeSlack(text: string): string {
  return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

/** Truncates to at most `max` code units, ending with "…" when cut. */
export function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  if (max < ELLIPSIS.length) return "";
  const end = safeCut(text, max - ELLIPSIS.length);
  return `${text.slice(0, end).trimEnd()}${ELLIPSIS}`;
}

/**
 * Moves a cut position back so it splits neither a surrogate pair, an `&amp;`-style entity, nor a
 * `<...>` token (mentions and dates that a builder embeds on purpose).
 */
export function safeCut(text: string, at: number): number {
  let end = cutPoint(text, at);
  const amp = text.lastIndexOf("&", end - 1);
  if (amp >= 0 && end - amp < 5) {
    const entity = ENTITY_AT.exec(text.slice(amp, amp + 5));
    if (entity && amp + entity[0].length > end) end = amp;
  }
  const open = text.lastIndexOf("<", end - 1);
  if (open >= 0 && text.lastIndexOf(">", end - 1) < open) end = open;
  return end;
}

/**
 * Where to cut safe mrkdwn to keep at most `max` code units: at a paragraph, then line, then word
 * break in the second half of the window, else anywhere that splits no character, entity or token.
 */
export function breakPoint(text: string, max: number): number {
  if (text.length <= max) return text.length;
  const window = text.slice(0, max);
  for (const separator of ["\n\n", "\n", " "]) {
    const at = window.lastIndexOf(separator);
    if (at > max / 2) return safeCut(text, at);
  }
  return safeCut(text, max);
}

/** Escapes, then truncates, so the limit counts the escaped characters Slack receives. */
export function clip(text: string, max: number): string {
  return truncate(escapeMrkdwn(text), max);
}

/** Text for a plain_text object: one line, escaped, truncated. Never contains a raw `<`. */
export function plainText(text: string, max: number): string {
  return clip(text.replace(/\s+/g, " ").trim(), max);
}

/** Text that must not be empty (Slack rejects empty text objects): falls back to `fallback`. */
export function orElse(text: string, fallback: string): string {
  return text.trim() === "" ? fallback : text;
}

// Config-sourced IDs are embedded as mentions only when they look like Slack IDs.
const USER_ID = /^[UW][A-Z0-9]+$/;
const GROUP_ID = /^S[A-Z0-9]+$/;
const CHANNEL_ID = /^[CG][A-Z0-9]+$/;
const ID_MAX = 40;

export function isUserId(id: string): boolean {
  return id.length <= ID_MAX && USER_ID.test(id);
}
export function isGroupId(id: string): boolean {
  return id.length <= ID_MAX && GROUP_ID.test(id);
}
export function isChannelId(id: string): boolean {
  return id.length <= ID_MAX && CHANNEL_ID.test(id);
}

/**
 * A mention for a user (`U`/`W`), user group (`S`) or channel (`C`/`G`) ID. Anything else is shown
 * as escaped text, so a malformed ID can never become a broadcast or a link.
 */
export function mention(id: string): string {
  if (isUserId(id)) return `<@${id}>`;
  if (isGroupId(id)) return `<!subteam^${id}>`;
  if (isChannelId(id)) return `<#${id}>`;
  return `\`${clip(id, ID_MAX)}\``;
}

/** Several owners stored as one comma-joined ID list ("U0ANN,S0LEADS"): a mention of each. */
export function mentionEach(ids: string): string {
  return ids.split(",").map(mention).join(", ");
}

/**
 * A date shown in each reader's own time zone; the fallback (UTC) is what clients without date
 * support, and notifications, show.
 */
export function slackDate(at: Date, format = "{date_short_pretty} at {time}"): string {
  const ms = at.getTime();
  if (!Number.isFinite(ms)) return "an unknown time";
  const unix = Math.floor(ms / 1000);
  const fallback = `${at.toISOString().slice(0, 16).replace("T", " ")} UTC`;
  return `<!date^${unix}^${format}|${fallback}>`;
}
