import type { z } from "zod";
import type { Agent } from "./agents/directory.ts";
import {
  type EscalationNote,
  escalationNoteSchema,
  type HandBackNote,
  type HandoffNote,
  handBackNoteSchema,
  handoffNoteSchema,
  withStrayFacts,
} from "./handoffs/note.ts";
import type { ModelReply } from "./model.ts";
import { ESCALATE, HAND_BACK, TRANSFER_PREFIX, transferTarget } from "./tools/builtin.ts";
import type { ToolDefinition, ToolRegistry } from "./tools/tool.ts";

/** What the runtime does with one model reply. Nothing here touches the world. */
export type Action =
  | { kind: "tool"; callId: string; tool: ToolDefinition; args: unknown }
  | {
      kind: "rejected";
      callId: string;
      name: string;
      reason: RejectReason;
      message: string;
      rawArgs: string;
    }
  | { kind: "transfer"; callId: string; to: string; note: HandoffNote }
  | { kind: "hand_back"; callId: string; to: string; note: HandBackNote }
  | { kind: "escalate"; callId: string; note: EscalationNote }
  | { kind: "final"; text: string }
  | { kind: "empty" }
  | { kind: "cut_off" }
  /** The server could not read the call the model wrote: what it said. */
  | { kind: "unreadable"; detail: string };

export type RejectReason = "not_allowed" | "unknown_tool" | "invalid_arguments" | "no_hand_back";

export interface DispatchContext {
  agent: Agent;
  registry: ToolRegistry;
  /** The agent the work would go back to, if it was handed over. */
  handBackTo: string | undefined;
}

/**
 * Turns a model reply into actions. The allowlist is checked here, in code, whatever the model
 * asks: a tool outside the agent's list is refused and the model is told so as a tool error.
 */
export function interpretReply(reply: ModelReply, ctx: DispatchContext): Action[] {
  if (reply.cutOff) return [{ kind: "cut_off" }];
  if (reply.unreadableCall !== undefined)
    return [{ kind: "unreadable", detail: reply.unreadableCall }];
  if (reply.toolCalls.length === 0) {
    const text = reply.content?.trim();
    return text ? [{ kind: "final", text }] : [{ kind: "empty" }];
  }
  return reply.toolCalls.map((call) => interpretCall(call, ctx));
}

function interpretCall(call: ModelReply["toolCalls"][number], ctx: DispatchContext): Action {
  const reject = (reason: RejectReason, message: string): Action => ({
    kind: "rejected",
    callId: call.id,
    name: call.name,
    reason,
    message,
    rawArgs: call.arguments,
  });
  const parse = <T>(
    schema: z.ZodType<T>,
    note?: z.ZodObject,
  ): { ok: true; value: T } | { ok: false; error: string } => {
    let json: unknown;
    try {
      json = call.arguments.trim() === "" ? {} : JSON.parse(call.arguments);
      // A gateway that encodes the arguments' JSON text once more sends a string of an object.
      if (typeof json === "string" && json.trim().startsWith("{")) json = JSON.parse(json);
    } catch (error) {
      return { ok: false, error: `arguments are not valid JSON (${(error as Error).message})` };
    }
    const result = schema.safeParse(note ? withStrayFacts(json, note) : json);
    if (result.success) return { ok: true, value: result.data };
    const issues = result.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
    return { ok: false, error: `arguments do not match the schema: ${issues.join("; ")}` };
  };
  const { agent } = ctx;

  if (call.name.startsWith(TRANSFER_PREFIX)) {
    const to = transferTarget(agent, call.name);
    if (!to)
      return reject(
        "not_allowed",
        `${agent.name} may not hand work to that agent. Allowed: ${agent.handoffs.join(", ") || "none"}.`,
      );
    const parsed = parse(handoffNoteSchema, handoffNoteSchema);
    if (!parsed.ok)
      return reject(
        "invalid_arguments",
        `${call.name}: ${parsed.error}. Call it again with a valid note.`,
      );
    return { kind: "transfer", callId: call.id, to, note: parsed.value };
  }
  if (call.name === HAND_BACK) {
    if (!ctx.handBackTo)
      return reject(
        "no_hand_back",
        "Nobody handed this task to you, so there is no one to hand it back to. Answer the requester instead.",
      );
    const parsed = parse(handBackNoteSchema, handBackNoteSchema);
    if (!parsed.ok) return reject("invalid_arguments", `hand_back: ${parsed.error}.`);
    return { kind: "hand_back", callId: call.id, to: ctx.handBackTo, note: parsed.value };
  }
  if (call.name === ESCALATE) {
    const parsed = parse(escalationNoteSchema, escalationNoteSchema);
    if (!parsed.ok) return reject("invalid_arguments", `escalate_to_human: ${parsed.error}.`);
    return { kind: "escalate", callId: call.id, note: parsed.value };
  }
  const tool = ctx.registry.get(call.name);
  if (!tool)
    return reject(
      "unknown_tool",
      `There is no tool named "${call.name}". Use only the tools you were given.`,
    );
  if (!agent.tools.includes(call.name)) {
    return reject(
      "not_allowed",
      `${agent.name} is not allowed to use ${call.name}. Hand the work to the agent that owns it.`,
    );
  }
  const parsed = parse(tool.input);
  if (!parsed.ok) return reject("invalid_arguments", `${call.name}: ${parsed.error}.`);
  return { kind: "tool", callId: call.id, tool, args: parsed.value };
}
