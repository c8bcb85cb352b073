import type { Path, Problem } from "./agents-file-checks.ts";
import type { AgentsFile, ApprovalCondition, ApprovalPolicy } from "./agents-schema.ts";

// Approval policies against the tools they name. The gate (src/core/policy.ts) lets read tools
// run first, reads one top-level argument, and applies the first policy that matches: a policy
// that breaks one of these rules would load and then never apply, so each is refused here.

/** What the checks know of a tool: its class and, when readable, its arguments' JSON Schema. */
export interface ToolShape {
  toolClass: "read" | "write" | "irreversible";
  /** The JSON Schema of its arguments (an object); undefined when it cannot be read. */
  schema: Record<string, unknown> | undefined;
  /** Where its class is set, for the message that says to change it. */
  classSetIn: "code" | "file";
}

/** The line a path's node starts on, for messages that point at a second place in the file. */
export type LineOf = (path: Path) => number;

export function approvalPolicyProblems(
  file: AgentsFile,
  tools: ReadonlyMap<string, ToolShape>,
  lineOf: LineOf,
): Problem[] {
  const problems: Problem[] = [];
  file.policies.approvals.forEach((policy, i) => {
    const at = (...path: Path) => ["policies", "approvals", i, ...path];
    const tool = tools.get(policy.tool);
    if (!tool) return;
    if (tool.toolClass === "read") {
      const where = tool.classSetIn === "file" ? "class: write under tools:" : "in Baton's code";
      problems.push({
        path: at("tool"),
        message: `"${policy.tool}" is a read tool, and read tools never wait for approval: remove this policy, or class the tool write (${where}) if its calls must wait`,
      });
    } else if (policy.when && tool.schema) {
      const message = conditionProblem(policy.tool, policy.when, tool.schema);
      if (message) problems.push({ path: at("when", "argument"), message });
    }
  });
  return [...problems, ...shadowProblems(file.policies.approvals, lineOf)];
}

/**
 * A `supervised` agent's writes wait for `policies.supervisors`, unless an approval policy names
 * other approvers for every call of the tool. With no supervisors, those writes would only be
 * proposed, as in shadow mode: say so rather than let the agent quietly never act.
 */
export function supervisionProblems(
  file: AgentsFile,
  tools: ReadonlyMap<string, ToolShape>,
): Problem[] {
  if (file.policies.supervisors) return [];
  const problems: Problem[] = [];
  file.agents.forEach((agent, i) => {
    if (agent.autonomy !== "supervised") return;
    const unwatched = agent.tools.filter((name) => {
      const tool = tools.get(name);
      const alwaysApproved = file.policies.approvals.some((p) => p.tool === name && !p.when);
      return tool !== undefined && tool.toolClass !== "read" && !alwaysApproved;
    });
    if (unwatched.length === 0) return;
    problems.push({
      path: ["agents", i, "autonomy"],
      message: `a supervised agent's writes (${unwatched.join(", ")}) wait for policies.supervisors, and none are named, so they would only be proposed: add policies.supervisors (users or groups), or set autonomy: shadow`,
    });
  });
  return problems;
}

type ArgType = "number" | "string" | "boolean" | "other";
const TYPE_WORDS: Record<ArgType, string> = {
  number: "a number",
  string: "text",
  boolean: "true or false",
  other: "neither a number, text nor true or false",
};

function conditionProblem(
  toolName: string,
  when: ApprovalCondition,
  schema: Record<string, unknown>,
): string | undefined {
  const properties = asRecord(schema.properties) ?? {};
  const names = Object.keys(properties);
  const listed = names.length
    ? `its arguments are ${names.join(", ")}`
    : "it takes no arguments, so only a policy without `when` applies to it";
  const property = Object.hasOwn(properties, when.argument)
    ? asRecord(properties[when.argument])
    : undefined;
  if (!property) return `"${toolName}" has no argument "${when.argument}"; ${listed}`;

  const types = typesOf(property);
  // A schema that says nothing of the argument's type leaves nothing to check it against.
  if (types.size === 0) return undefined;
  const is = `"${when.argument}" of ${toolName} is ${[...types].map((t) => TYPE_WORDS[t]).join(" or ")}`;
  const numbers = names.filter((n) => typesOf(asRecord(properties[n]) ?? {}).has("number"));
  const comparator = when.greater_than !== undefined ? "greater_than" : "at_least";
  if ((when.greater_than ?? when.at_least) !== undefined && !types.has("number")) {
    const instead = numbers.length
      ? `compare one of its number arguments (${numbers.join(", ")}), or use equals`
      : "use equals";
    return `${is}, and ${comparator} compares numbers; ${instead} (${listed})`;
  }
  if (when.equals === undefined) return undefined;
  const valueType = typeof when.equals as ArgType;
  if (!types.has(valueType)) {
    const asWritten = JSON.stringify(String(when.equals));
    const instead = types.has("string")
      ? `write it in quotes: equals: ${asWritten}`
      : types.has("number") && Number.isFinite(Number(when.equals))
        ? `write it without quotes: equals: ${Number(when.equals)}`
        : `compare it with a value of that type`;
    return `${is}, and equals ${JSON.stringify(when.equals)} is ${TYPE_WORDS[valueType]}, so it never matches; ${instead}`;
  }
  if (Array.isArray(property.enum) && !property.enum.includes(when.equals))
    return `${is}, one of ${property.enum.map((v) => JSON.stringify(v)).join(", ")}: equals ${JSON.stringify(when.equals)} never matches; use one of those`;
  return undefined;
}

/** The types a JSON Schema allows, from `type`, `const`, `enum` and its `anyOf`/`oneOf` branches. */
function typesOf(schema: Record<string, unknown>): Set<ArgType> {
  const types = new Set<ArgType>();
  const add = (name: unknown) => {
    if (name === "number" || name === "integer") types.add("number");
    else if (name === "string" || name === "boolean") types.add(name);
    else if (typeof name === "string" && name !== "null") types.add("other");
  };
  for (const name of [schema.type].flat()) add(name);
  const values = [...("const" in schema ? [schema.const] : []), ...[schema.enum ?? []].flat()];
  for (const value of values)
    if (value !== null) add(typeof value === "object" ? "other" : typeof value);
  for (const branch of [schema.anyOf ?? [], schema.oneOf ?? []].flat()) {
    const branchSchema = asRecord(branch);
    if (branchSchema) for (const type of typesOf(branchSchema)) types.add(type);
  }
  return types;
}

const asRecord = (value: unknown) =>
  value && typeof value === "object" && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;

/**
 * A policy that an earlier one on the same tool always beats: the gate applies the first match,
 * so `> 100 → leads` above `> 1000 → CFO` would send a 5,000 refund to a lead alone.
 */
function shadowProblems(policies: readonly ApprovalPolicy[], lineOf: LineOf): Problem[] {
  const problems: Problem[] = [];
  policies.forEach((later, j) => {
    const i = policies.findIndex(
      (earlier, k) => k < j && earlier.tool === later.tool && covers(earlier.when, later.when),
    );
    const earlier = policies[i];
    if (!earlier) return;
    const line = lineOf(["policies", "approvals", i, "id"]);
    problems.push({
      path: ["policies", "approvals", j, "id"],
      message: `this policy never applies: "${earlier.id}" (line ${line}) comes first and matches every call of ${later.tool} this one does, and the first matching policy applies; list the stricter policy first`,
    });
  });
  return problems;
}

/** Whether every call `later` matches is matched by `earlier` too. */
function covers(earlier: ApprovalCondition | undefined, later: ApprovalCondition | undefined) {
  if (!earlier) return true;
  if (!later || later.argument !== earlier.argument) return false;
  // The smallest value `later` matches, and whether it is matched itself (at_least) or only above.
  const floor =
    later.greater_than !== undefined
      ? { value: later.greater_than, included: false }
      : later.at_least !== undefined
        ? { value: later.at_least, included: true }
        : typeof later.equals === "number"
          ? { value: later.equals, included: true }
          : undefined;
  if (earlier.greater_than !== undefined)
    return (
      floor !== undefined &&
      (floor.value > earlier.greater_than ||
        (floor.value === earlier.greater_than && !floor.included))
    );
  if (earlier.at_least !== undefined) return floor !== undefined && floor.value >= earlier.at_least;
  if (earlier.equals !== undefined) return later.equals === earlier.equals;
  return true;
}
