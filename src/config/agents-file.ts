import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { type Document, isMap, isNode, isScalar, LineCounter, parseDocument, visit } from "yaml";
import type { z } from "zod";
import { ConfigError } from "../errors.ts";
import {
  crossFieldProblems,
  type Env,
  type KnownTools,
  type Path,
  type Problem,
} from "./agents-file-checks.ts";
import { type AgentsFile, agentsFileSchema } from "./agents-schema.ts";
import { nearName } from "./near-names.ts";
import { yamlProblems } from "./yaml-errors.ts";

/**
 * Loads the operator's agents file. Problems are reported in three rounds, each as
 * `file:line:col path: what to write`, every problem of a round at once: YAML syntax, then each
 * setting's shape (the schema), then the checks across settings (unknown tools and agents,
 * policies against their tools, prices), which need a file whose shape is right to run on.
 */
export async function loadAgentsFile(
  path: string,
  knownTools?: KnownTools,
  env: Env = process.env,
): Promise<AgentsFile> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new ConfigError(unreadable(path, (error as NodeJS.ErrnoException).code), {
      cause: error,
    });
  }
  return parseAgentsFile(text, path, knownTools, env);
}

/** Why the file could not be read, with what to do about that reason: not always to create it. */
function unreadable(path: string, code: string | undefined): string {
  const file = `The agents file ${path}`;
  if (code === "EISDIR")
    return `${file} is a folder: set BATON_AGENTS_FILE to the file, such as ${join(path, "agents.yml")}.`;
  if (code === "EACCES" || code === "EPERM")
    return `${file} cannot be read by the user Baton runs as (permission denied): let that user read it, or set BATON_AGENTS_FILE to a copy it may read.`;
  const reason = code === "ENOENT" ? "not found" : `unreadable (${code ?? "unknown error"})`;
  return `${file} is ${reason}: create it (see agents.yml in the Baton repository) or set BATON_AGENTS_FILE to its path.`;
}

/**
 * `knownTools`: the tools registered in code (the file's HTTP tools are added to them); without
 * it, tool names are not checked, and with names alone, approval policies on code tools are not
 * checked against the tools' classes and arguments. `env`: where the HTTP tools' references must
 * be set.
 */
export function parseAgentsFile(
  text: string,
  sourceName: string,
  knownTools?: KnownTools,
  env: Env = process.env,
): AgentsFile {
  const lineCounter = new LineCounter();
  // `merge`: a shared block of settings (`<<: *common`) is read as YAML 1.1 files use it.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, merge: true });
  const fail = (lines: string[]) =>
    new ConfigError(`${sourceName} is not valid:\n${lines.join("\n")}`);

  if (doc.errors.length > 0) throw fail(yamlProblems(doc.errors, text, lineCounter, sourceName));
  const located = (problems: Problem[]) => fail(describe(problems, doc, lineCounter, sourceName));
  // toJS() reports an unresolved alias without a position: find each one at its own line first.
  const unresolved: string[] = [];
  visit(doc, {
    Alias(_, alias) {
      if (alias.resolve(doc) !== undefined) return;
      const { line, col } = lineCounter.linePos(alias.range?.[0] ?? 0);
      unresolved.push(
        `${sourceName}:${line}:${col} no anchor "&${alias.source}" is set before this alias "*${alias.source}"; check its spelling`,
      );
    },
  });
  if (unresolved.length > 0) throw fail(unresolved);

  let data: unknown;
  try {
    data = doc.toJS();
  } catch (error) {
    // Unresolved aliases surface only here, without a position.
    throw located([{ path: [], message: (error as Error).message }]);
  }
  if (data === null || data === undefined) {
    throw located([
      { path: [], message: 'the file is empty: define at least one agent under "agents:"' },
    ]);
  }

  const parsed = agentsFileSchema.safeParse(data, { error: friendlyMessage });
  if (!parsed.success) throw located(parsed.error.issues.flatMap(toProblems));

  const lineOf = (path: Path) => lineCounter.linePos(offsetOf(doc, { path, message: "" })).line;
  const problems = crossFieldProblems(parsed.data, knownTools, env, lineOf);
  if (problems.length > 0) throw located(problems);
  return parsed.data;
}

function toProblems(issue: z.core.$ZodIssue): Problem[] {
  const path = issue.path.filter((p) => typeof p !== "symbol");
  if (issue.code === "unrecognized_keys") {
    const known = settingsAt(agentsFileSchema, path);
    const here = known ? ` (here: ${known.join(", ")})` : "";
    return issue.keys.map((key) => {
      const meant = known && nearName(key, known);
      return {
        path,
        key,
        message: meant
          ? `unknown setting; did you mean ${meant}?${here}`
          : `unknown setting; check its spelling and indentation${here}`,
      };
    });
  }
  return [{ path, message: issue.message }];
}

type SchemaDef = {
  type: string;
  innerType?: unknown;
  in?: unknown;
  shape?: Record<string, unknown>;
  element?: unknown;
  valueType?: unknown;
};
const defOf = (node: unknown) => (node as { _zod?: { def?: SchemaDef } } | undefined)?._zod?.def;

/** The settings the schema allows at `path`, for a message about one it does not. */
function settingsAt(schema: unknown, path: readonly PropertyKey[]): string[] | undefined {
  let node = schema;
  for (const step of [...path, undefined]) {
    let def = defOf(node);
    // Past optional(), default(), prefault() and transform() to the schema underneath.
    while (def && (def.innerType !== undefined || def.type === "pipe")) {
      node = def.innerType ?? def.in;
      def = defOf(node);
    }
    if (!def) return undefined;
    if (step === undefined)
      return def.type === "object" && def.shape ? Object.keys(def.shape) : undefined;
    if (def.type === "object") node = def.shape?.[String(step)];
    else if (def.type === "array") node = def.element;
    else if (def.type === "record") node = def.valueType;
    else return undefined;
  }
  return undefined;
}

const NOUNS: Record<string, string> = {
  string: "text",
  number: "a number",
  int: "a whole number",
  boolean: "true or false",
  array: "a list",
  object: "a mapping (key: value)",
};

/** Plain words for zod's generic messages; the schema's own messages take precedence. */
const friendlyMessage: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case "invalid_type":
      if (issue.input === undefined) return "missing; add it";
      return `expected ${NOUNS[issue.expected] ?? issue.expected}`;
    case "invalid_value":
      return `use one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
    case "too_small":
      if (issue.origin === "array") return `list at least ${issue.minimum}`;
      if (issue.origin === "string") return "must not be empty";
      return `use a number ${issue.inclusive ? "of at least" : "greater than"} ${issue.minimum}`;
    case "too_big":
      if (issue.origin === "array") return `list at most ${issue.maximum}`;
      if (issue.origin === "string") return `use at most ${issue.maximum} characters`;
      return `use a number ${issue.inclusive ? "of at most" : "less than"} ${issue.maximum}`;
    default:
      return undefined;
  }
};

function describe(
  problems: Problem[],
  doc: Document,
  lineCounter: LineCounter,
  sourceName: string,
): string[] {
  return problems
    .map((problem) => ({ problem, pos: lineCounter.linePos(offsetOf(doc, problem)) }))
    .sort((a, b) => a.pos.line - b.pos.line || a.pos.col - b.pos.col)
    .map(({ problem, pos }) => {
      const label = formatPath(problem.key ? [...problem.path, problem.key] : problem.path);
      return `${sourceName}:${pos.line}:${pos.col} ${label ? `${label}: ` : ""}${problem.message}`;
    });
}

/** The node at the path, or its nearest existing parent when the value is missing. */
function offsetOf(doc: Document, problem: Problem): number {
  for (let depth = problem.path.length; depth >= 0; depth--) {
    const node = doc.getIn(problem.path.slice(0, depth), true);
    if (!isNode(node) || !node.range) continue;
    if (problem.key !== undefined && depth === problem.path.length && isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && p.key.value === problem.key);
      if (isScalar(pair?.key) && pair.key.range) return pair.key.range[0];
    }
    return node.range[0];
  }
  return 0;
}

function formatPath(path: Path): string {
  return path
    .map((part, i) => (typeof part === "number" ? `[${part}]` : i === 0 ? part : `.${part}`))
    .join("");
}
