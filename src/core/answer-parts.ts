/**
 * A long answer goes to the thread as several messages, each one Slack shows whole: a message's
 * blocks hold about 10,000 characters of text in all, and escaping (`&` → `&amp;`) grows text, so
 * a part is well under that. Parts break at a paragraph, else a line, else a word. Past
 * `MAX_PARTS` the last part carries the rest, which the message cuts with a note.
 */
export const ANSWER_PART_MAX = 6_000;
const MAX_PARTS = 8;

export function answerParts(text: string, max = ANSWER_PART_MAX): string[] {
  const parts: string[] = [];
  let rest = text.trim();
  while (rest.length > max && parts.length < MAX_PARTS - 1) {
    const cut = breakBefore(rest, max);
    parts.push(rest.slice(0, cut).trimEnd());
    rest = rest.slice(cut).trimStart();
  }
  return [...parts, rest];
}

function breakBefore(text: string, max: number): number {
  const window = text.slice(0, max);
  for (const at of ["\n\n", "\n", " "]) {
    const found = window.lastIndexOf(at);
    if (found > max / 2) return found;
  }
  // One long word: cut it, but not between the two halves of a surrogate pair (an emoji).
  const code = text.charCodeAt(max - 1);
  return code >= 0xd800 && code <= 0xdbff ? max - 1 : max;
}
