import { nearestOf } from "../core/typos.ts";

/**
 * The one of `names` that `word` is a typo of, for a message that asks "did you mean …?": one typo
 * in a short name, two in a long one. Most of an environment is other programs' variables, and a
 * wider guess would name them.
 */
export function nearName(word: string, names: readonly string[]): string | undefined {
  return nearestOf(
    word,
    names,
    (n) => [n],
    (n) => (n.length < 8 ? 1 : 2),
  );
}

/** Another tool's name for one of Baton's settings, which people carry over to Baton. */
const NAMES_ELSEWHERE: Readonly<Record<string, string>> = { OPENAI_API_BASE: "OPENAI_BASE_URL" };

/** A variable Baton does not read, set where it meant one that it does. */
export interface Misspelling {
  given: string;
  meant: string;
}

/**
 * Variables set that Baton would read if they were spelt right: a typo of one of its settings
 * (`SLACK_APP_TOKN`, `log_level`) or another tool's name for one (`OPENAI_API_BASE`), while the
 * setting itself is unset. Unread, they leave the setting at its default without a word: HTTP mode
 * instead of Socket Mode, the model at api.openai.com instead of the local server.
 */
export function misspelledSettings(
  env: Readonly<Record<string, string | undefined>>,
  settings: readonly string[],
): Misspelling[] {
  const known = new Set(settings);
  const isSet = (name: string) => (env[name]?.trim() ?? "") !== "";
  const found: Misspelling[] = [];
  for (const given of Object.keys(env)) {
    if (known.has(given) || !isSet(given)) continue;
    const meant = NAMES_ELSEWHERE[given] ?? nearName(given.toUpperCase(), settings);
    if (meant !== undefined && known.has(meant) && !isSet(meant)) found.push({ given, meant });
  }
  return found;
}

/** Said after a required setting's "is missing" when it was misspelt. */
export const renameNote = ({ given, meant }: Misspelling) =>
  `${given} is set: rename it to ${meant}.`;

/** The startup log's warning of one that leaves an optional setting at its default. */
export const ignoredNote = ({ given, meant }: Misspelling) =>
  `${given} is set, but Baton reads ${meant}, which is unset: rename ${given} to ${meant}, or unset it.`;
