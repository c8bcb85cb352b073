import { z } from "zod";
import type { Agent } from "../agents/directory.ts";
import { escalationNoteSchema, handBackNoteSchema, handoffNoteSchema } from "../handoffs/note.ts";
import type { ToolSpec } from "../model.ts";
import type { ToolDefinition, ToolRegistry } from "./tool.ts";

export const TRANSFER_PREFIX = "transfer_to_";
export const HAND_BACK = "hand_back";
export const ESCALATE = "escalate_to_human";

const jsonSchemaCache = new WeakMap<z.ZodType, Record<string, unknown>>();

/** The JSON schema the model sees for a zod input (input side: defaults are optional). */
export function parametersOf(schema: z.ZodType): Record<string, unknown> {
  let cached = jsonSchemaCache.get(schema);
  if (!cached) {
    const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { io: "input" }) as Record<
      string,
      unknown
    >;
    cached = rest;
    jsonSchemaCache.set(schema, cached);
  }
  return cached;
}

/**
 * A tool's argument names in its schema's order, as the model is shown them: a card lists the
 * arguments so. None for a tool no longer registered.
 */
export function argumentNames(tool: ToolDefinition | undefined): string[] {
  if (!tool) return [];
  const { properties } = tool.parameters ?? parametersOf(tool.input);
  return typeof properties === "object" && properties !== null ? Object.keys(properties) : [];
}

/** The tools one agent is offered this turn: its allowlist, its handoff targets, and the built-ins. */
export function toolSpecsFor(
  agent: Agent,
  registry: ToolRegistry,
  agents: (id: string) => Agent | undefined,
  canHandBack: boolean,
): ToolSpec[] {
  const specs: ToolSpec[] = [];
  for (const name of agent.tools) {
    const tool = registry.get(name);
    if (tool)
      specs.push({
        name,
        description: tool.description,
        parameters: tool.parameters ?? parametersOf(tool.input),
      });
  }
  for (const targetId of agent.handoffs) {
    const target = agents(targetId);
    if (!target) continue;
    specs.push({
      name: `${TRANSFER_PREFIX}${targetId.replaceAll("-", "_")}`,
      description: `Hand the task to ${target.name} with a short note: summary, what you did, what is needed, and the facts they need.`,
      parameters: parametersOf(handoffNoteSchema),
    });
  }
  if (canHandBack) {
    specs.push({
      name: HAND_BACK,
      description:
        "Your part is done: return the task, with the result and facts, to the agent that handed it to you.",
      parameters: parametersOf(handBackNoteSchema),
    });
  }
  specs.push({
    name: ESCALATE,
    description:
      "Hand the task to a person when you cannot resolve it safely, are unsure, or the case is sensitive.",
    parameters: parametersOf(escalationNoteSchema),
  });
  return specs;
}

/** Tool names cannot hold dashes for every provider, so agent ids map to underscores. */
export function transferTarget(agent: Agent, toolName: string): string | undefined {
  if (!toolName.startsWith(TRANSFER_PREFIX)) return undefined;
  const wanted = toolName.slice(TRANSFER_PREFIX.length);
  return agent.handoffs.find((id) => id.replaceAll("-", "_") === wanted || id === wanted);
}
