/** The Block Kit limit walker, shared by the view builder and chat surface tests. */
import assert from "node:assert/strict";

export type Node = Record<string, unknown>;
export const isNode = (v: unknown): v is Node =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string => (typeof v === "string" ? v : "");

// The only `<...>` tokens a builder may emit: mentions of config IDs and dates.
const ALLOWED_TOKEN =
  /^<(?:@[UW][A-Z0-9]+|#[CG][A-Z0-9]+|!subteam\^S[A-Z0-9]+|!date\^-?\d+\^[^|<>]+\|[^|<>]+)>$/;

/**
 * Walks a message (`{ text, blocks }`), a view or a block list and fails listing every Block Kit
 * limit it breaks, and every text that could notify, link or inject.
 */
export function assertWithinSlackLimits(payload: unknown): void {
  const problems: string[] = [];
  const fail = (path: string, what: string) => void problems.push(`${path}: ${what}`);
  const max = (path: string, value: unknown, limit: number) => {
    if (typeof value === "string" && value.length > limit) fail(path, `${value.length} > ${limit}`);
  };
  const count = (path: string, items: unknown[], min: number, limit: number) => {
    if (items.length < min || items.length > limit) fail(path, `${items.length} items`);
  };
  const unique = (path: string, keys: string[]) => {
    if (new Set(keys).size !== keys.length) fail(path, "duplicate ids or values");
  };

  const text = (path: string, t: unknown, limit: number, plainOnly = false) => {
    if (!isNode(t) || (t.type !== "plain_text" && t.type !== "mrkdwn"))
      return fail(path, "no text object");
    if (plainOnly && t.type !== "plain_text") fail(path, "must be plain_text");
    max(path, t.text, limit);
    safe(path, str(t.text), t.type === "plain_text");
  };
  const safe = (path: string, value: string, plain: boolean) => {
    if (value.trim() === "") fail(path, "empty text");
    if (/@(channel|here|everyone)\b/i.test(value)) fail(path, "bare broadcast word");
    for (const token of value.match(/<[^>]*>?/g) ?? []) {
      if (plain || !ALLOWED_TOKEN.test(token)) fail(path, `raw token ${token.slice(0, 40)}`);
    }
  };

  const element = (path: string, e: unknown) => {
    if (!isNode(e)) return fail(path, "not an element");
    max(`${path}.action_id`, e.action_id, 255);
    if (e.type === "button") {
      text(`${path}.text`, e.text, 75, true);
      max(`${path}.value`, e.value, 2000);
      max(`${path}.url`, e.url, 3000);
      if (e.url !== undefined && !str(e.url).startsWith("https://")) fail(path, "non-https url");
    } else if (e.type === "static_select") {
      const options = list(e.options).filter(isNode);
      count(`${path}.options`, options, 1, 100);
      unique(
        `${path}.options`,
        options.map((o) => str(o.value)),
      );
      for (const [i, o] of options.entries()) {
        text(`${path}.options[${i}].text`, o.text, 75, true);
        max(`${path}.options[${i}].value`, o.value, 150);
      }
      if (e.placeholder) text(`${path}.placeholder`, e.placeholder, 150, true);
    } else if (e.type === "plain_text_input") {
      if (Number(e.max_length ?? 0) > 3000) fail(path, "max_length > 3000");
    } else fail(path, `unchecked element ${String(e.type)}`);
  };

  const block = (path: string, b: unknown) => {
    if (!isNode(b)) return fail(path, "not a block");
    max(`${path}.block_id`, b.block_id, 255);
    const elements = list(b.elements);
    if (b.type === "section") {
      if (b.text === undefined && b.fields === undefined) fail(path, "section without text");
      if (b.text !== undefined) text(`${path}.text`, b.text, 3000);
      count(`${path}.fields`, list(b.fields), 0, 10);
      for (const [i, f] of list(b.fields).entries()) text(`${path}.fields[${i}]`, f, 2000);
      if (b.accessory !== undefined) element(`${path}.accessory`, b.accessory);
    } else if (b.type === "header") text(`${path}.text`, b.text, 150, true);
    else if (b.type === "context") {
      count(`${path}.elements`, elements, 1, 10);
      for (const [i, e] of elements.entries()) text(`${path}.elements[${i}]`, e, 3000);
    } else if (b.type === "actions") {
      count(`${path}.elements`, elements, 1, 25);
      unique(
        path,
        elements.map((e) => (isNode(e) ? str(e.action_id) : "")),
      );
      for (const [i, e] of elements.entries()) element(`${path}.elements[${i}]`, e);
    } else if (b.type === "input") {
      text(`${path}.label`, b.label, 2000, true);
      element(`${path}.element`, b.element);
    } else if (b.type !== "divider") fail(path, `unchecked block ${String(b.type)}`);
  };
  const blocks = (path: string, all: unknown[], limit: number) => {
    count(path, all, 0, limit);
    unique(
      `${path} block_id`,
      all.flatMap((b) => (isNode(b) && b.block_id ? [str(b.block_id)] : [])),
    );
    for (const [i, b] of all.entries()) block(`${path}[${i}]`, b);
  };

  if (Array.isArray(payload)) blocks("blocks", payload, 50);
  else if (isNode(payload) && (payload.type === "modal" || payload.type === "home")) {
    blocks("view.blocks", list(payload.blocks), 100);
    max("view.private_metadata", payload.private_metadata, 3000);
    max("view.callback_id", payload.callback_id, 255);
    for (const key of ["title", "submit", "close"]) {
      if (payload.type === "modal" && (key === "title" || payload[key])) {
        text(`view.${key}`, payload[key], 24, true);
      }
    }
  } else if (isNode(payload)) {
    max("text", payload.text, 40000);
    safe("text", str(payload.text), false);
    blocks("blocks", list(payload.blocks), 50);
  } else fail("payload", "not a message, view or block list");

  assert.deepEqual(problems, [], `Slack limits broken:\n${problems.slice(0, 20).join("\n")}`);
}
