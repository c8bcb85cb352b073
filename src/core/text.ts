/**
 * Pure helpers for text from outside (a model, a tool) on its way to Postgres or back to a model.
 * Postgres refuses a NUL in `text` and `jsonb`, and `jsonb` refuses a lone surrogate (half an
 * emoji): one such character in a reply would fail the turn's write on every retry.
 * Lengths are UTF-16 code units (JavaScript's `length`); cuts fall on code point boundaries.
 */

// Either an escaped backslash (kept whole, so `\\u0000` stays text), or a \u escape to clean.
const JSON_ESCAPE =
  /\\\\|\\u0000|\\u[dD][89abAB][0-9a-fA-F]{2}(?:\\u[dD][c-fC-F][0-9a-fA-F]{2})?|\\u[dD][c-fC-F][0-9a-fA-F]{2}/g;

/** Without NULs, and with any lone surrogate replaced by U+FFFD. */
export function cleanText(text: string): string {
  return text.replaceAll("\u0000", "").toWellFormed();
}

/**
 * `cleanText` for JSON text, through its escapes too: `"\u0000"` parses to a NUL, and `"\ud83d"`
 * alone to a lone surrogate. Anything else is left as sent, so unparsable text stays as it was.
 */
export function cleanJsonText(text: string): string {
  return cleanText(text).replace(JSON_ESCAPE, (found) => {
    if (found === "\\\\" || found.length === 12) return found;
    return found === "\\u0000" ? "" : "\\ufffd";
  });
}

/** `at`, or one less when a cut there would split a surrogate pair. */
export function cutPoint(text: string, at: number): number {
  if (at <= 0) return 0;
  const code = text.charCodeAt(at - 1);
  return code >= 0xd800 && code <= 0xdbff ? at - 1 : at;
}

/** The first `max` code units of `text` at most, never half of an emoji. */
export function headOf(text: string, max: number): string {
  return text.length <= max ? text : text.slice(0, cutPoint(text, max));
}

/** At most `max` code units, ending with "…" when cut. */
export function shorten(text: string, max: number): string {
  if (text.length <= max) return text;
  return max < 1 ? "" : `${headOf(text, max - 1)}…`;
}

/** A URL part with its %-escapes decoded, or as written when they are not valid UTF-8. */
export function decodedOrAsIs(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
