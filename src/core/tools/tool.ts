import type { z } from "zod";

/** read: no side effect. write: changes state, reversible. irreversible: money moves, mail goes out. */
export type ToolClass = "read" | "write" | "irreversible";

export interface ToolContext {
  /**
   * Where the tool reads and writes Baton's own database: for a write or irreversible tool, the
   * open transaction the task's turn commits in, so the effect and the record of the call commit
   * together; for a read tool, the pool (a turn that only reads needs no transaction). Only
   * adapters look inside.
   */
  tx: unknown;
  /** Stable per (task, step, call): external systems dedupe retries with it. */
  idempotencyKey: string;
  taskId: string;
  agentId: string;
}

// biome-ignore lint/suspicious/noExplicitAny: a registry holds tools of many inputs; each tool parses its own with zod.
export interface ToolDefinition<Input = any> {
  name: string;
  /** What the model reads to decide when to call it. */
  description: string;
  /** What it does, as the person who asked reads it after "needs approval to": "issue a refund". */
  label?: string;
  toolClass: ToolClass;
  input: z.ZodType<Input>;
  /**
   * Its effect lives outside Baton's database (an HTTP tool's), so a failed turn's rollback does
   * not undo it: the turn keeps the model's reply first, and a retry replays it.
   */
  external?: boolean;
  /** The JSON Schema the model sees, when written by hand (an HTTP tool's); else `input`'s. */
  parameters?: Record<string, unknown>;
  run(ctx: ToolContext, input: Input): Promise<unknown>;
}

export type ToolRegistry = ReadonlyMap<string, ToolDefinition>;

export function toolRegistry(tools: readonly ToolDefinition[]): ToolRegistry {
  const registry = new Map<string, ToolDefinition>();
  for (const tool of tools) {
    if (registry.has(tool.name)) throw new Error(`tool ${tool.name} is registered twice`);
    registry.set(tool.name, tool);
  }
  return registry;
}

/**
 * A tool in words for the people who asked ("issue a refund"): its label, else its name spelled
 * out. Approvers' cards and the audit keep the exact name.
 */
export function toolWords(tool: Pick<ToolDefinition, "name" | "label">): string {
  return tool.label ?? tool.name.replaceAll("_", " ");
}

/** Tool results go back to the model as a typed error it can act on, never a crash. */
export class ToolInputError extends Error {}
