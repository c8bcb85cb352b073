import type { types } from "@slack/bolt";
import {
  ACTION_ID_MAX,
  BUTTON_TEXT_MAX,
  BUTTON_VALUE_MAX,
  CONTEXT_ELEMENTS_MAX,
  clip,
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

/** A message payload for chat.postMessage / chat.update. */
export interface SlackMessage {
  /** Notification and accessibility fallback, already escaped. */
  text: string;
  blocks: Block[];
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

/** A labelled field from untrusted text: `*label*` over the value. */
export function field(label: string, value: string): string {
  return `*${clip(label, 100)}*\n${orElse(clip(value, FIELD_TEXT_MAX - 110), "—")}`;
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

/**
 * Key/value pairs as fields sections: at most `sections` sections of 10 fields each; the keys that
 * did not fit are listed (clipped) in `rest` so the reader knows something was left out.
 */
export function keyValueBlocks(
  pairs: [string, unknown][],
  sections: number,
  noun: string,
): FieldBlocks {
  const capacity = sections * FIELDS_PER_SECTION;
  const shown = pairs.slice(0, capacity);
  const blocks: types.SectionBlock[] = [];
  for (let i = 0; i < shown.length; i += FIELDS_PER_SECTION) {
    const chunk = shown.slice(i, i + FIELDS_PER_SECTION);
    blocks.push(fieldsSection(chunk.map(([key, value]) => field(key, formatValue(value)))));
  }
  const hidden = pairs.slice(capacity);
  if (hidden.length === 0) return { blocks };
  const names = hidden.map(([key]) => clip(key, 60)).join(", ");
  return { blocks, rest: truncate(`+${hidden.length} more ${noun}: ${names}`, 1000) };
}

/** A bulleted list of untrusted items, each clipped, the whole cut to `max`. */
export function bullets(items: string[], itemMax: number, max: number): string {
  return truncate(items.map((item) => `• ${clip(item, itemMax)}`).join("\n"), max);
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
