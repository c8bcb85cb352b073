import { readFile } from "node:fs/promises";
import { validate as isValidCron } from "node-cron";
import { type Document, isMap, isNode, isScalar, LineCounter, parseDocument, visit } from "yaml";
import { z } from "zod";
import { ConfigError } from "../errors.ts";
import { type AgentsFile, agentsFileSchema, ENV_REFERENCE } from "./agents-schema.ts";

/**
 * Loads the operator's agents file. Every problem (YAML syntax, schema, cross-field) is reported
 * at once, each as `file:line:col path: what to write`, so one edit-and-restart fixes them all.
 */

/** Ids that would be confused with the owners Baton itself records. */
const RESERVED_AGENT_IDS = new Set(["human", "baton"]);
/** Every agent has these; listing them under `tools` is a mistake. */
const BUILT_IN_TOOLS = new Set(["hand_back", "escalate_to_human"]);
const isBuiltInTool = (name: string) => BUILT_IN_TOOLS.has(name) || name.startsWith("transfer_to_");

type Path = readonly (string | number)[];
interface Problem {
  path: Path;
  message: string;
  /** Point at this key of the mapping at `path` rather than at the mapping (unknown keys). */
  key?: string;
}

export async function loadAgentsFile(
  path: string,
  knownTools?: ReadonlySet<string>,
  env: Env = process.env,
): Promise<AgentsFile> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === "ENOENT" ? "not found" : `unreadable (${code ?? "unknown error"})`;
    throw new ConfigError(
      `The agents file ${path} is ${reason}: create it (see agents.yml in the Baton repository) or set BATON_AGENTS_FILE to its path.`,
      { cause: error },
    );
  }
  return parseAgentsFile(text, path, knownTools, env);
}

/** The environment the HTTP tools' `${NAME}` references are read from. */
type Env = Readonly<Record<string, string | undefined>>;

/**
 * `knownTools`: the tools registered in code (the file's HTTP tools are added to them); without
 * it, tool names are not checked. `env`: where the HTTP tools' references must be set.
 */
export function parseAgentsFile(
  text: string,
  sourceName: string,
  knownTools?: ReadonlySet<string>,
  env: Env = process.env,
): AgentsFile {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const fail = (lines: string[]) =>
    new ConfigError(`${sourceName} is not valid:\n${lines.join("\n")}`);

  if (doc.errors.length > 0) {
    throw fail(
      doc.errors.map((error) => {
        const { line, col } = lineCounter.linePos(error.pos[0]);
        return `${sourceName}:${line}:${col} ${error.message}`;
      }),
    );
  }
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

  const problems = crossFieldProblems(parsed.data, knownTools, env);
  if (problems.length > 0) throw located(problems);
  return parsed.data;
}

function toProblems(issue: z.core.$ZodIssue): Problem[] {
  const path = issue.path.filter((p) => typeof p !== "symbol");
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => ({
      path,
      key,
      message: "unknown setting; check its spelling and indentation",
    }));
  }
  return [{ path, message: issue.message }];
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

function crossFieldProblems(
  file: AgentsFile,
  knownTools: ReadonlySet<string> | undefined,
  env: Env,
): Problem[] {
  return [
    ...agentIdProblems(file),
    ...handoffProblems(file),
    ...httpToolProblems(file, knownTools, env),
    ...toolProblems(
      file,
      knownTools && new Set([...knownTools, ...file.tools.map((tool) => tool.name)]),
    ),
    ...digestProblems(file),
  ];
}

function agentIdProblems(file: AgentsFile): Problem[] {
  const problems: Problem[] = [];
  const firstIndexById = new Map<string, number>();
  const claimedBy = new Map<string, string>();
  file.agents.forEach((agent, i) => {
    const first = firstIndexById.get(agent.id);
    if (RESERVED_AGENT_IDS.has(agent.id)) {
      problems.push({
        path: ["agents", i, "id"],
        message: `"${agent.id}" is reserved; choose another id`,
      });
    } else if (first !== undefined) {
      problems.push({
        path: ["agents", i, "id"],
        message: `"${agent.id}" is already the id of agents[${first}]; agent ids must be unique`,
      });
    } else firstIndexById.set(agent.id, i);

    agent.channels.forEach((channel, j) => {
      const owner = claimedBy.get(channel);
      if (owner !== undefined && owner !== agent.id) {
        problems.push({
          path: ["agents", i, "channels", j],
          message: `${channel} is already claimed by "${owner}"; a channel has one entry agent`,
        });
      } else claimedBy.set(channel, agent.id);
    });
  });
  return problems;
}

function handoffProblems(file: AgentsFile): Problem[] {
  const ids = new Set(file.agents.map((a) => a.id));
  const known = [...ids].join(", ");
  const problems: Problem[] = [];
  file.agents.forEach((agent, i) => {
    agent.handoffs.forEach((target, j) => {
      const path = ["agents", i, "handoffs", j];
      if (target === agent.id)
        problems.push({ path, message: "an agent cannot hand off to itself" });
      else if (!ids.has(target)) {
        problems.push({ path, message: `no agent has the id "${target}" (agents: ${known})` });
      }
    });
  });
  const entry = file.defaults.entry_agent;
  if (entry !== undefined && !ids.has(entry)) {
    problems.push({
      path: ["defaults", "entry_agent"],
      message: `no agent has the id "${entry}" (agents: ${known})`,
    });
  }
  return problems;
}

/**
 * The file's HTTP tools: names that no other tool has, a JSON Schema Baton can check arguments
 * against, and every `${NAME}` they read set in the environment (checked now, read at each call).
 */
function httpToolProblems(
  file: AgentsFile,
  knownTools: ReadonlySet<string> | undefined,
  env: Env,
): Problem[] {
  const problems: Problem[] = [];
  const seen = new Set<string>();
  file.tools.forEach((tool, i) => {
    const at = (...path: Path) => ["tools", i, ...path];
    const clash = isBuiltInTool(tool.name)
      ? `"${tool.name}" is a built-in tool's name; choose another`
      : knownTools?.has(tool.name)
        ? `"${tool.name}" is already a tool of Baton's; choose another name`
        : seen.has(tool.name)
          ? `"${tool.name}" is already defined above; tool names must be unique`
          : undefined;
    if (clash) problems.push({ path: at("name"), message: clash });
    seen.add(tool.name);
    try {
      z.fromJSONSchema(tool.parameters as z.core.JSONSchema.JSONSchema);
    } catch (error) {
      const message = `Baton cannot check arguments against this schema: ${(error as Error).message}`;
      problems.push({ path: at("parameters"), message });
    }
    const unset = (value: string) =>
      [...value.matchAll(ENV_REFERENCE)].map((m) => m[1]).filter((name) => !env[name ?? ""]);
    for (const name of unset(tool.url))
      problems.push({ path: at("url"), message: `the environment variable ${name} is not set` });
    for (const [header, value] of Object.entries(tool.headers))
      for (const name of unset(value))
        problems.push({
          path: at("headers", header),
          message: `the environment variable ${name} is not set`,
        });
  });
  return problems;
}

function toolProblems(file: AgentsFile, knownTools?: ReadonlySet<string>): Problem[] {
  const unknown = (name: string) =>
    knownTools !== undefined && !knownTools.has(name)
      ? `no tool is named "${name}" (tools: ${[...knownTools].sort().join(", ")})`
      : undefined;
  const problems: Problem[] = [];
  file.agents.forEach((agent, i) => {
    agent.tools.forEach((name, j) => {
      const message = isBuiltInTool(name)
        ? `"${name}" is built in and available to every agent; remove it from tools`
        : unknown(name);
      if (message) problems.push({ path: ["agents", i, "tools", j], message });
    });
  });
  const policyIds = new Set<string>();
  file.policies.approvals.forEach((policy, i) => {
    if (policyIds.has(policy.id)) {
      const message = `"${policy.id}" is already used; policy ids must be unique`;
      problems.push({ path: ["policies", "approvals", i, "id"], message });
    }
    policyIds.add(policy.id);
    const message = unknown(policy.tool);
    if (message) problems.push({ path: ["policies", "approvals", i, "tool"], message });
  });
  const limited = new Set<string>();
  file.policies.rate_limits.tools.forEach((limit, i) => {
    const message = limited.has(limit.tool)
      ? `"${limit.tool}" already has a rate limit; keep one per tool`
      : isBuiltInTool(limit.tool)
        ? `"${limit.tool}" is built in; rate limits apply to the tools agents list`
        : unknown(limit.tool);
    limited.add(limit.tool);
    if (message) problems.push({ path: ["policies", "rate_limits", "tools", i, "tool"], message });
  });
  return problems;
}

function digestProblems(file: AgentsFile): Problem[] {
  const { schedule, timezone } = file.digest;
  const problems: Problem[] = [];
  // node-cron also accepts a leading seconds field, which would silently shift every field.
  if (schedule.trim().split(/\s+/).length !== 5 || !isValidCron(schedule)) {
    problems.push({
      path: ["digest", "schedule"],
      message: `"${schedule}" is not a 5-field cron expression (minute hour day month weekday), e.g. "0 9 * * 1-5"`,
    });
  }
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: timezone });
  } catch {
    problems.push({
      path: ["digest", "timezone"],
      message: `"${timezone}" is not a time zone; use an IANA name such as "UTC" or "Europe/Paris"`,
    });
  }
  return problems;
}
