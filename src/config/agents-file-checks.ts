import { validate as isValidCron } from "node-cron";
import { z } from "zod";
import { type AgentsFile, ENV_REFERENCE } from "./agents-schema.ts";

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

export function crossFieldProblems(
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
