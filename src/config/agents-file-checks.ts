import { z } from "zod";
import { normalise } from "../core/agents/directory.ts";
import { priceOf } from "../core/model.ts";
import { type AgentsFile, ENV_REFERENCE, urlProblem } from "./agents-schema.ts";
import {
  approvalPolicyProblems,
  type LineOf,
  supervisionProblems,
  type ToolShape,
} from "./approval-policy-checks.ts";
import { cronScheduleProblem } from "./cron-schedule.ts";
import { nearName } from "./near-names.ts";

// The agents file's checks across fields (ids, handoffs, tools, policies, the digest), once zod has
// checked each field; each problem carries the path whose line the error names.

/** Ids that would be confused with the owners Baton itself records. */
const RESERVED_AGENT_IDS = new Set(["human", "baton"]);
/** Every agent has these; listing them under `tools` is a mistake. */
const BUILT_IN_TOOLS = new Set(["hand_back", "escalate_to_human"]);
const isBuiltInTool = (name: string) => BUILT_IN_TOOLS.has(name) || name.startsWith("transfer_to_");

export type Path = readonly (string | number)[];
export interface Problem {
  path: Path;
  message: string;
  /** Point at this key of the mapping at `path` rather than at the mapping (unknown keys). */
  key?: string;
}

/** The environment the HTTP tools' `${NAME}` references are read from. */
export type Env = Readonly<Record<string, string | undefined>>;

/** A tool registered in code, as far as the checks need it (a ToolDefinition is one). */
export interface CodeTool {
  name: string;
  toolClass: ToolShape["toolClass"];
  input: z.ZodType;
}
/**
 * The tools registered in code: their definitions, so that approval policies are checked against
 * their classes and arguments, or only their names (then only the file's HTTP tools are).
 */
export type KnownTools = ReadonlySet<string> | readonly CodeTool[];

export function crossFieldProblems(
  file: AgentsFile,
  knownTools: KnownTools | undefined,
  env: Env,
  lineOf: LineOf,
): Problem[] {
  const codeNames =
    knownTools && new Set([...knownTools].map((t) => (typeof t === "string" ? t : t.name)));
  return [
    ...agentIdProblems(file),
    ...handoffProblems(file),
    ...httpToolProblems(file, codeNames, env),
    ...toolProblems(
      file,
      codeNames && new Set([...codeNames, ...file.tools.map((tool) => tool.name)]),
    ),
    ...approvalPolicyProblems(file, toolShapes(file, knownTools), lineOf),
    ...supervisionProblems(file, toolShapes(file, knownTools)),
    ...priceProblems(file),
    ...digestProblems(file),
  ];
}

/** The class and argument schema of every tool the checks can see: the file's, and code's when given. */
function toolShapes(file: AgentsFile, knownTools: KnownTools | undefined): Map<string, ToolShape> {
  const shapes = new Map<string, ToolShape>();
  for (const tool of knownTools ?? []) {
    if (typeof tool === "string") continue;
    let schema: Record<string, unknown> | undefined;
    try {
      // The gate compares the arguments as the schema parsed them: its output side. A transform's
      // output has no type here, so an argument it makes is checked by name only.
      schema = z.toJSONSchema(tool.input, { unrepresentable: "any", io: "output" });
    } catch {
      schema = undefined;
    }
    shapes.set(tool.name, { toolClass: tool.toolClass, schema, classSetIn: "code" });
  }
  for (const tool of file.tools)
    shapes.set(tool.name, { toolClass: tool.class, schema: tool.parameters, classSetIn: "file" });
  return shapes;
}

/** A cap in USD counts what the agent's model costs: one with no known price would never stop. */
function priceProblems(file: AgentsFile): Problem[] {
  const problems: Problem[] = [];
  file.agents.forEach((agent, i) => {
    const model = agent.model ?? file.defaults.model;
    const price = priceOf(model, file.prices);
    const why = !price
      ? `the model "${model}" has no known price, so this cap would never be reached: add its price in USD under prices (prices: { ${JSON.stringify(model)}: { input_per_million: 0.5, output_per_million: 1.5 } }), or cap tokens_per_task instead`
      : price.input_per_million + price.output_per_million === 0
        ? `the model "${model}" is priced at 0 under prices, so this cap would never be reached: give its price, or cap tokens_per_task instead`
        : undefined;
    if (!why) return;
    for (const cap of ["usd_per_task", "usd_per_day"] as const)
      if (agent.caps[cap] !== undefined)
        problems.push({ path: ["agents", i, "caps", cap], message: why });
  });
  return problems;
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

    // People tell the agents apart by their names, and "@Baton <name or id>:" picks one by its
    // letters and digits alone: "Customer-Service" would be "Customer Service" there.
    const key = normalise(agent.name);
    const sameName = file.agents.findIndex(
      (other, k) => k < i && [other.name, other.id].some((word) => normalise(word) === key),
    );
    if (sameName !== -1)
      problems.push({
        path: ["agents", i, "name"],
        message: `"${agent.name}" reads as the name or id of agents[${sameName}] ("${file.agents[sameName]?.name}"); each agent needs a name of its own, so people can tell who speaks and "@Baton <name>:" reaches it`,
      });

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

/** `; did you mean "x"?` when `word` is a typo of one of `names`, else nothing. */
const didYouMean = (word: string, names: readonly string[]) => {
  const meant = nearName(word, names);
  return meant ? `; did you mean "${meant}"?` : "";
};

const noAgent = (id: string, ids: readonly string[]) =>
  `no agent has the id "${id}"${didYouMean(id, ids)} (agents: ${ids.join(", ")})`;

function handoffProblems(file: AgentsFile): Problem[] {
  const ids = new Set(file.agents.map((a) => a.id));
  const problems: Problem[] = [];
  file.agents.forEach((agent, i) => {
    agent.handoffs.forEach((target, j) => {
      const path = ["agents", i, "handoffs", j];
      const first = agent.handoffs.indexOf(target);
      if (first < j)
        problems.push({
          path,
          message: `"${target}" is already listed at handoffs[${first}]; list each agent once`,
        });
      else if (target === agent.id)
        problems.push({ path, message: "an agent cannot hand off to itself" });
      else if (!ids.has(target)) {
        problems.push({ path, message: noAgent(target, [...ids]) });
      }
    });
  });
  const entry = file.defaults.entry_agent;
  if (entry !== undefined && !ids.has(entry)) {
    problems.push({
      path: ["defaults", "entry_agent"],
      message: noAgent(entry, [...ids]),
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
    // Blank counts as unset: the value is trimmed where it is used (src/http/http-tools.ts).
    const unset = (value: string) =>
      [...value.matchAll(ENV_REFERENCE)]
        .map((m) => m[1])
        .filter((name) => !env[name ?? ""]?.trim());
    for (const name of unset(tool.url))
      problems.push({
        path: at("url"),
        message: `the environment variable ${name} is not set; set it in the environment Baton starts with`,
      });
    const wrongUrl = unset(tool.url).length === 0 && expandedUrlProblem(tool.url, env);
    if (wrongUrl) problems.push({ path: at("url"), message: wrongUrl });
    for (const [header, value] of Object.entries(tool.headers))
      for (const name of unset(value))
        problems.push({
          path: at("headers", header),
          message: `the environment variable ${name} is not set; set it in the environment Baton starts with, or remove the header`,
        });
  });
  return problems;
}

/** A URL with `${NAME}` in it, checked as it will be called (one without, the schema checked). */
function expandedUrlProblem(url: string, env: Env): string | undefined {
  if (!url.match(ENV_REFERENCE)) return undefined;
  const expanded = url.replace(ENV_REFERENCE, (_, name: string) => env[name]?.trim() ?? "");
  return urlProblem(expanded, url);
}

function toolProblems(file: AgentsFile, knownTools?: ReadonlySet<string>): Problem[] {
  const unknown = (name: string) =>
    knownTools !== undefined && !knownTools.has(name)
      ? `no tool is named "${name}"${didYouMean(name, [...knownTools])} (tools: ${[...knownTools].sort().join(", ")})`
      : undefined;
  const problems: Problem[] = [];
  file.agents.forEach((agent, i) => {
    agent.tools.forEach((name, j) => {
      const first = agent.tools.indexOf(name);
      // The model would be sent two functions of one name.
      const message =
        first < j
          ? `"${name}" is already listed at tools[${first}]; list each tool once`
          : isBuiltInTool(name)
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
  const cron = cronScheduleProblem(schedule);
  if (cron) problems.push({ path: ["digest", "schedule"], message: cron });
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
