import type { types } from "@slack/bolt";
import {
  ACTION_ID_MAX,
  BLOCKS_TEXT_BUDGET,
  BUTTON_TEXT_MAX,
  BUTTON_VALUE_MAX,
  CONTEXT_ELEMENTS_MAX,
  clip,
  ELLIPSIS,
  FALLBACK_TEXT_MAX,
  FIELD_TEXT_MAX,
  FIELDS_PER_SECTION,
  HEADER_MAX,
  orElse,
  plainText,
  SECTION_TEXT_MAX,
  truncate,
} from "../mrkdwn.ts";

/**
 * Small constructors shared by the builders. Each one enforces its own Block Kit limit, so a
 * builder can pass any composed text and still produce a valid block.
 */
export type Block = types.KnownBlock;
export type Button = types.Button;
export type ModalView = types.ModalView;
export type HomeView = types.HomeView;

/** A message payload for chat.postMessage / chat.update; build it with `message`. */
export interface SlackMessage {
  /** Notification and accessibility fallback, already escaped. */
  text: string;
  blocks: Block[];
  /**
   * The message as text alone (default: `text`), posted if Slack refuses the blocks after all; a
   * card's says what its buttons would have offered, and how to do without them.
   */
  textOnly?: string;
}

/**
 * The one way a message builder returns its message. Builders plan their own cuts and say what
 * they left out; should the blocks still hold more than BLOCKS_TEXT_BUDGET characters of text,
 * the longest texts are shortened to one common length, so no input can make Slack refuse it.
 */
export function message(text: string, blocks: Block[], textOnly?: string): SlackMessage {
  const fitted = fitTextBudget(blocks, BLOCKS_TEXT_BUDGET);
  return textOnly === undefined ? { text, blocks: fitted } : { text, blocks: fitted, textOnly };
}

/** The characters of every text object in `blocks`: what Slack sums against its cap. */
export function blocksTextLength(blocks: readonly unknown[]): number {
  return textObjects(blocks).reduce((sum, object) => sum + object.text.length, 0);
}

/** Cuts the texts longer than a common length, found so that all of them fit `budget`. */
export function fitTextBudget(blocks: Block[], budget: number): Block[] {
  if (blocksTextLength(blocks) <= budget) return blocks;
  const copy = structuredClone(blocks);
  const texts = textObjects(copy);
  const cap = commonCap(
    texts.map((object) => object.text.length),
    budget,
  );
  for (const object of texts) {
    // truncate never splits an entity, token or surrogate pair; "…" keeps the object non-empty.
    if (object.text.length > cap) object.text = orElse(truncate(object.text, cap), ELLIPSIS);
  }
  return copy;
}

type TextObject = { type: "mrkdwn" | "plain_text"; text: string };

function textObjects(value: unknown, found: TextObject[] = []): TextObject[] {
  if (Array.isArray(value)) for (const item of value) textObjects(item, found);
  else if (typeof value === "object" && value !== null) {
    const node = value as Record<string, unknown>;
    if ((node.type === "mrkdwn" || node.type === "plain_text") && typeof node.text === "string")
      found.push(node as TextObject);
    else for (const child of Object.values(node)) textObjects(child, found);
  }
  return found;
}

/** The largest `cap` (at least 1) with the lengths, each cut to `cap`, summing to `budget` at most. */
function commonCap(lengths: number[], budget: number): number {
  let low = 1;
  let high = lengths.reduce((max, n) => Math.max(max, n), 1);
  while (low < high) {
    const mid = Math.ceil((low + high) / 2);
    const sum = lengths.reduce((total, n) => total + Math.min(n, mid), 0);
    if (sum <= budget) low = mid;
    else high = mid - 1;
  }
  return low;
}

/** `text` must already be safe mrkdwn (escaped user text plus trusted tokens). */
export function section(text: string, accessory?: Button): types.SectionBlock {
  const block: types.SectionBlock = {
    type: "section",
    text: { type: "mrkdwn", text: orElse(truncate(text, SECTION_TEXT_MAX), "—") },
  };
  if (accessory) block.accessory = accessory;
  return block;
}

/** A two-column fields section; extra fields are dropped, so callers summarise the rest first. */
export function fieldsSection(fields: string[]): types.SectionBlock {
  return {
    type: "section",
    fields: fields.slice(0, FIELDS_PER_SECTION).map((text) => ({
      type: "mrkdwn",
      text: orElse(truncate(text, FIELD_TEXT_MAX), "—"),
    })),
  };
}

/** A labelled field from untrusted text: `*label*` over the value, `max` characters at most. */
export function field(label: string, value: string, max = FIELD_TEXT_MAX): string {
  return `*${clip(label, 100)}*\n${orElse(clip(value, max - 110), "—")}`;
}

export function context(texts: string[]): types.ContextBlock {
  return {
    type: "context",
    elements: texts.slice(0, CONTEXT_ELEMENTS_MAX).map((text) => ({
      type: "mrkdwn",
      text: orElse(truncate(text, SECTION_TEXT_MAX), "—"),
    })),
  };
}

/** `text` is untrusted; it is flattened to one line, escaped and cut to the header limit. */
export function header(text: string): types.HeaderBlock {
  const safe = orElse(plainText(text, HEADER_MAX), "—");
  return { type: "header", text: { type: "plain_text", text: safe, emoji: true } };
}

export function divider(): types.DividerBlock {
  return { type: "divider" };
}

export interface ButtonInput {
  text: string;
  actionId: string;
  value?: string;
  url?: string;
  style?: "primary" | "danger";
}

/**
 * Ids and values are ours (row ids, page numbers), never user text: an over-long one is a bug, and
 * cutting it would point the click at the wrong row, so it throws instead.
 */
export function button(input: ButtonInput): types.Button {
  if (input.actionId.length > ACTION_ID_MAX) throw new RangeError("action_id too long");
  if (input.value !== undefined && input.value.length > BUTTON_VALUE_MAX) {
    throw new RangeError("button value too long");
  }
  const element: types.Button = {
    type: "button",
    action_id: input.actionId,
    text: { type: "plain_text", text: orElse(plainText(input.text, BUTTON_TEXT_MAX), "Open") },
  };
  if (input.value !== undefined) element.value = input.value;
  if (input.url !== undefined) element.url = input.url;
  if (input.style) element.style = input.style;
  return element;
}

export function actions(elements: types.Button[]): types.ActionsBlock {
  return { type: "actions", elements };
}

/** The notification fallback: untrusted text, escaped and short. */
export function fallback(text: string): string {
  return orElse(clip(text.replace(/\s+/g, " ").trim(), FALLBACK_TEXT_MAX), "Baton");
}

// Permalinks come from chat.getPermalink; only plain https URLs become link buttons.
const SAFE_URL = /^https:\/\/[^\s<>|"]+$/;
export function safeUrl(url: string | undefined): string | undefined {
  return url !== undefined && url.length <= 3000 && SAFE_URL.test(url) ? url : undefined;
}

/** A value from stored or model JSON as readable text; never throws (cycles, bigint). */
export function formatValue(value: unknown): string {
  if (typeof value === "string") return value;
  if (value === null || typeof value !== "object") return String(value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

export interface FieldBlocks {
  blocks: types.SectionBlock[];
  /** A one-line summary of the pairs that did not fit, if any. */
  rest?: string;
}

/** Each shown pair keeps this much however many share the budget: a key and a readable value. */
const FIELD_SHARE_MIN = 300;
/** What a `rest` line may take: count the budget of a caller that shows one this much smaller. */
export const REST_MAX = 500;

/**
 * A record's pairs in an order that does not depend on how it was stored: a jsonb column keeps keys
 * sorted by length, not as written, so a card built again from a stored row would list them
 * otherwise than the card first posted. The keys named in `first` lead, in its order; the rest
 * follow by code unit.
 */
export function stableEntries(
  record: Record<string, unknown>,
  first: readonly string[] = [],
): [string, unknown][] {
  const named = first.filter((key) => Object.hasOwn(record, key));
  const others = Object.keys(record)
    .filter((key) => !named.includes(key))
    .sort();
  return [...new Set([...named, ...others])].map((key) => [key, record[key]]);
}

/**
 * Key/value pairs as fields sections: at most `sections` sections of 10 fields each, within
 * `budget` characters of text in all. Each field gets an equal share of the budget, so one long
 * value cannot crowd out the rest; the pairs that did not fit are counted and named in `rest`.
 */
export function keyValueBlocks(
  pairs: [string, unknown][],
  sections: number,
  noun: string,
  budget = Number.POSITIVE_INFINITY,
): FieldBlocks {
  const capacity = sections * FIELDS_PER_SECTION;
  const share = Math.floor(budget / Math.max(1, Math.min(pairs.length, capacity)));
  const max = Math.min(FIELD_TEXT_MAX, Math.max(FIELD_SHARE_MIN, share));
  const fields: string[] = [];
  let used = 0;
  for (const [key, value] of pairs.slice(0, capacity)) {
    const text = field(key, formatValue(value), max);
    if (used + text.length > budget) break;
    fields.push(text);
    used += text.length;
  }
  const blocks: types.SectionBlock[] = [];
  for (let i = 0; i < fields.length; i += FIELDS_PER_SECTION) {
    blocks.push(fieldsSection(fields.slice(i, i + FIELDS_PER_SECTION)));
  }
  const hidden = pairs.slice(fields.length);
  if (hidden.length === 0) return { blocks };
  const names = hidden.map(([key]) => clip(key, 60)).join(", ");
  return { blocks, rest: truncate(`+${hidden.length} more ${noun}: ${names}`, REST_MAX) };
}

/** What is left of the message budget for text beside `fixed`, less a `rest` line. */
export function roomBeside(fixed: readonly Block[]): number {
  return Math.max(0, BLOCKS_TEXT_BUDGET - blocksTextLength(fixed) - REST_MAX);
}

const BULLET = "• ";

/**
 * A bulleted list of untrusted items within `max`: each clipped to `itemMax`, then the longest
 * shortened to one common length, so every item shows (a cut list would hide what was tried).
 */
export function bullets(items: string[], itemMax: number, max: number): string {
  const texts = items.map((item) => clip(item, itemMax));
  const room = max - texts.length * (BULLET.length + 1);
  const cap = commonCap(
    texts.map((text) => text.length),
    room,
  );
  const lines = texts.map(
    (text) => `${BULLET}${text.length > cap ? orElse(truncate(text, cap), ELLIPSIS) : text}`,
  );
  return truncate(lines.join("\n"), max);
}

const URGENCY_LABEL: Record<string, string> = {
  low: "low urgency",
  normal: "normal urgency",
  high: "⚠️ high urgency",
  urgent: "🚨 urgent",
};
export function urgencyLabel(urgency: string): string {
  return URGENCY_LABEL[urgency] ?? clip(urgency, 20);
}

/** 0..1 as a whole percentage; out-of-range or NaN input is clamped or hidden. */
export function percent(confidence: number | undefined): string | undefined {
  if (confidence === undefined || !Number.isFinite(confidence)) return undefined;
  return `${Math.round(Math.min(1, Math.max(0, confidence)) * 100)}%`;
}
