// YAML's syntax errors in an agents file, as the operator is told them: one line per mistake, with
// where it is and what to write instead, not each error YAML's reading of the rest then causes.
import type { LineCounter, YAMLError } from "yaml";

/**
 * YAML's errors as `file:line:col advice`, told once: a line indented one space too far, or with a
 * tab, makes YAML read the lines after it wrongly, and its errors about those name lines that are right.
 */
export function yamlProblems(
  errors: readonly YAMLError[],
  text: string,
  lineCounter: LineCounter,
  sourceName: string,
): string[] {
  const lines = text.split("\n");
  const lineAt = (offset: number) => lines[lineCounter.linePos(offset).line - 1] ?? "";
  const isTab = (error: YAMLError) =>
    error.code === "TAB_AS_INDENT" || /^[ \t]*\t/.test(lineAt(error.pos[0]));
  // What YAML reports after a tab follows from it: each line a tab indents is told, nothing after.
  const firstTab = Math.min(...errors.filter(isTab).map((error) => error.pos[0]));
  // So does what it reports on and after a line it told as indented differently: that line is told.
  const misindented = new Map(
    errors.flatMap((error) => {
      const line = misindentedLine(error, errors, lines, lineCounter);
      return line === undefined ? [] : [[error, line] as const];
    }),
  );
  const firstMisindented = Math.min(...misindented.values());
  const problemOf = (error: YAMLError): string | undefined => {
    const start = error.pos[0];
    const { line, col } = lineCounter.linePos(start);
    if (start >= firstTab)
      return isTab(error) ? `${line}:1 a tab indents this line; indent with spaces` : undefined;
    const told = misindented.get(error);
    if (told !== undefined) return outOfLine(lines, told);
    if (line >= firstMisindented) return undefined;
    // After a quoted value YAML does not read on: it names the line, in its own words.
    if (error.code === "BAD_INDENT" && error.message.startsWith("All mapping items must start"))
      return outOfLine(lines, line);
    if (isTwinOfNestedMapping(error, errors)) return undefined;
    return `${line}:${col} ${yamlAdvice(error, lineAt(start))}`;
  };
  const problems = new Set(errors.map(problemOf).filter((p) => p !== undefined));
  return [...problems].map((problem) => `${sourceName}:${problem}`);
}

/** A line told as out of line with its neighbours, and where it should start. */
function outOfLine(lines: readonly string[], lineNo: number): string {
  const at = indentOf(lines[lineNo - 1] ?? "");
  const beside = besideSetting(lines, lineNo);
  const where =
    beside && beside.indent !== at
      ? `: start it at column ${beside.indent + 1}, as line ${beside.line} does`
      : "";
  return `${lineNo}:${at + 1} this line is indented differently from the settings beside it; line it up with them${where}`;
}

/**
 * The setting a line should line up with: the one on the line above, unless that line opens a
 * block (it ends with ":", "|" or ">"), then the one on the line below. Blank lines and comments
 * are passed over.
 */
function besideSetting(
  lines: readonly string[],
  lineNo: number,
): { line: number; indent: number } | undefined {
  const meaningful = (n: number) => !/^\s*(?:#.*)?$/.test(lines[n - 1] ?? "");
  let above = lineNo - 1;
  while (above >= 1 && !meaningful(above)) above--;
  let below = lineNo + 1;
  while (below <= lines.length && !meaningful(below)) below++;
  const opensBlock = above >= 1 && /[:|>]\s*(?:#.*)?$/.test(lines[above - 1] ?? "");
  const line = above >= 1 && !opensBlock ? above : below <= lines.length ? below : undefined;
  return line === undefined ? undefined : { line, indent: indentOf(lines[line - 1] ?? "") };
}

/** Where a line's setting starts: its spaces, and a list item's "- ". */
const indentOf = (line: string) => /^ *(?:- +)?/.exec(line)?.[0].length ?? 0;
/** A line that holds one setting with a plain value, and no second ": " (or ":" at its end). */
const ONE_PLAIN_SETTING = /^ *(?:- +)?[^\s#:"'][^#:]*: +(?![\s"':])(?!.*:(?:\s|$))/;

/**
 * YAML reads a line indented past its neighbours' settings as more of the value above it, then
 * refuses the ": " it finds there as a mapping in a value (BLOCK_AS_IMPLICIT_KEY), and the value
 * as a key on more than one line (MULTILINE_IMPLICIT_KEY, from the same place to that ": ").
 * When the value's own line holds nothing else, the mistake is the indentation: of the line YAML
 * read on, or of the value's line when the settings after line up with the line read on instead.
 */
function misindentedLine(
  error: YAMLError,
  errors: readonly YAMLError[],
  lines: readonly string[],
  lineCounter: LineCounter,
): number | undefined {
  if (error.code !== "BLOCK_AS_IMPLICIT_KEY") return undefined;
  const first = lineCounter.linePos(error.pos[0]).line;
  const twin = errors.find((e) => e.code === "MULTILINE_IMPLICIT_KEY" && e.pos[0] === error.pos[0]);
  const second = twin && lineCounter.linePos(twin.pos[1]).line;
  if (second === undefined || second <= first || !ONE_PLAIN_SETTING.test(lines[first - 1] ?? ""))
    return undefined;
  const next = lines.slice(second).find((line) => !/^\s*(?:#.*)?$/.test(line));
  const indent = (n: number) => indentOf(lines[n - 1] ?? "");
  return next !== undefined && indentOf(next) === indent(second) && indent(second) !== indent(first)
    ? first
    : second;
}

/** MULTILINE_IMPLICIT_KEY from where a BLOCK_AS_IMPLICIT_KEY is: the same mistake, told once. */
const isTwinOfNestedMapping = (error: YAMLError, errors: readonly YAMLError[]) =>
  error.code === "MULTILINE_IMPLICIT_KEY" &&
  errors.some((e) => e.code === "BLOCK_AS_IMPLICIT_KEY" && e.pos[0] === error.pos[0]);

/**
 * YAML's words, with what to write instead where they are a library's (a duplicate key, a second
 * document) or miss the usual cause: a value holding ": ", such as an emoji name (":wave:") or a
 * sentence, left unquoted.
 */
function yamlAdvice(error: YAMLError, source: string): string {
  switch (error.code) {
    case "DUPLICATE_KEY": {
      const key = /^\s*(?:-\s+)?([^:#]+?)\s*:/.exec(source)?.[1];
      return `${key ? `"${key}"` : "a setting"} is set twice in the same place; keep one`;
    }
    case "MULTIPLE_DOCS":
      return 'the file holds more than one YAML document; remove the "---" line: one file holds every agent';
    case "BLOCK_AS_IMPLICIT_KEY":
      return /:\s+:[\w+-]+:\s*$/.test(source)
        ? `${error.message}; a value that starts with ":" (an emoji name) goes in quotes: icon: ":wave:"`
        : `${error.message}; a value with ": " in it goes in quotes (instructions: "Note: be kind"), or on the lines under "instructions: |"`;
    default:
      return error.message;
  }
}
