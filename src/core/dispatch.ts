import type { z } from "zod";
import type { Agent } from "./agents/directory.ts";
import {
  type EscalationNote,
  escalationNoteSchema,
  type HandBackNote,
  type HandoffNote,
  handBackNoteSchema,
  handoffNoteSchema,
  readNote,
} from "./handoffs/note.ts";
import type { ModelReply } from "./model.ts";
import { ESCALATE, HAND_BACK, TRANSFER_PREFIX, transferTarget } from "./tools/builtin.ts";
import type { ToolDefinition, ToolRegistry } from "./tools/tool.ts";

/** What the runtime does with one model reply. Nothing here touches the world. */
export type Action =
  | { kind: "tool"; callId: string; tool: ToolDefinition; args: unknown }
  /** The same call as an earlier one of the reply (`of`), under another id: it runs once. */
  | { kind: "repeat"; callId: string; of: string; name: string }
  /** The calls of a reply past the most Baton runs of one (MAX_CALLS_PER_REPLY): none runs. */
  | { kind: "too_many"; calls: readonly { callId: string; name: string }[] }
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
  /** The server's content filter withheld the reply: the task stops. */
  | { kind: "withheld" }
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
  if (reply.withheld) return [{ kind: "withheld" }];
  if (reply.cutOff) return [{ kind: "cut_off" }];
  if (reply.unreadableCall !== undefined)
    return [{ kind: "unreadable", detail: reply.unreadableCall }];
  if (reply.toolCalls.length === 0) {
    const text = reply.content?.trim();
    return text ? [{ kind: "final", text }] : [{ kind: "empty" }];
  }
  const over = reply.toolCalls.slice(MAX_CALLS_PER_REPLY);
  const actions = withRepeats(
    reply.toolCalls.slice(0, MAX_CALLS_PER_REPLY).map((call) => interpretCall(call, ctx)),
  );
  if (over.length === 0) return actions;
  return [
    ...actions,
    { kind: "too_many", calls: over.map((c) => ({ callId: c.id, name: c.name })) },
  ];
}

/**
 * The calls one reply may ask for: models ask for a handful at a time. A model looping inside one
 * reply (hundreds of calls) would otherwise run them all before any limit between turns is read.
 */
export const MAX_CALLS_PER_REPLY = 20;

/**
 * Models sometimes write one call twice in a reply under two ids. A call with the same tool and
 * arguments as an earlier one of the reply is its repeat, and is not run again: a write's side
 * effect would happen twice (an operator's tool may not guard itself), and a read would only cost
 * the operator's system a second request for the same answer. A read after a write is read again:
 * `check_stock`, `adjust_stock`, `check_stock` asks for the count before and after.
 */
function withRepeats(actions: Action[]): Action[] {
  const writes = new Map<string, string>();
  let reads = new Map<string, string>();
  return actions.map((action) => {
    if (action.kind !== "tool") return action;
    const isRead = action.tool.toolClass === "read";
    const seen = isRead ? reads : writes;
    const key = `${action.tool.name}\n${canonicalJson(action.args)}`;
    const of = seen.get(key);
    if (of !== undefined)
      return { kind: "repeat", callId: action.callId, of, name: action.tool.name };
    seen.set(key, action.callId);
    if (!isRead) reads = new Map();
    return action;
  });
}

/** JSON with object keys sorted, so `{a, b}` and `{b, a}` read as the same arguments. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

type ToolCall = ModelReply["toolCalls"][number];

function interpretCall(call: ToolCall, ctx: DispatchContext): Action {
  const builtIn = interpretBuiltIn(call, ctx);
  if (builtIn) return builtIn;
  const { agent } = ctx;
  const tool = ctx.registry.get(call.name);
  if (!tool)
    return rejected(
      call,
      "unknown_tool",
      `There is no tool named "${call.name}". Use only the tools you were given.`,
    );
  if (!agent.tools.includes(call.name)) {
    return rejected(
      call,
      "not_allowed",
      `${agent.name} is not allowed to use ${call.name}. Hand the work to the agent that owns it.`,
    );
  }
  const parsed = parseArguments(call, tool.input);
  if (!parsed.ok) return rejected(call, "invalid_arguments", `${call.name}: ${parsed.error}.`);
  return { kind: "tool", callId: call.id, tool, args: parsed.value };
}

/** A handoff, hand-back or escalation, read with its note's schema; undefined for any other call. */
function interpretBuiltIn(call: ToolCall, ctx: DispatchContext): Action | undefined {
  const { agent } = ctx;
  if (call.name.startsWith(TRANSFER_PREFIX)) {
    const to = transferTarget(agent, call.name);
    if (!to)
      return rejected(
        call,
        "not_allowed",
        `${agent.name} may not hand work to that agent. Allowed: ${agent.handoffs.join(", ") || "none"}.`,
      );
    const parsed = parseNote(call, handoffNoteSchema);
    if (!parsed.ok)
      return rejected(
        call,
        "invalid_arguments",
        `${call.name}: ${parsed.error}. Call it again with a valid note.`,
      );
    return { kind: "transfer", callId: call.id, to, note: parsed.value };
  }
  if (call.name === HAND_BACK) {
    if (!ctx.handBackTo)
      return rejected(
        call,
        "no_hand_back",
        "Nobody handed this task to you, so there is no one to hand it back to. Answer the requester instead.",
      );
    const parsed = parseNote(call, handBackNoteSchema);
    if (!parsed.ok) return rejected(call, "invalid_arguments", `hand_back: ${parsed.error}.`);
    return { kind: "hand_back", callId: call.id, to: ctx.handBackTo, note: parsed.value };
  }
  if (call.name === ESCALATE) {
    const parsed = parseNote(call, escalationNoteSchema);
    if (!parsed.ok)
      return rejected(call, "invalid_arguments", `escalate_to_human: ${parsed.error}.`);
    return { kind: "escalate", callId: call.id, note: parsed.value };
  }
  return undefined;
}

function rejected(call: ToolCall, reason: RejectReason, message: string): Action {
  return {
    kind: "rejected",
    callId: call.id,
    name: call.name,
    reason,
    message,
    rawArgs: call.arguments,
  };
}

/** A built-in's note: its optional fields are often sent as null, and are read as left out. */
function parseNote<T>(call: ToolCall, schema: z.ZodType<T> & z.ZodObject) {
  return parseArguments(call, schema, schema);
}

/**
 * A call's arguments read with `schema`, or what was wrong with them in words the model can act on.
 * `note`: a note's schema (see readNote).
 */
function parseArguments<T>(
  call: ToolCall,
  schema: z.ZodType<T>,
  note?: z.ZodObject,
): { ok: true; value: T } | { ok: false; error: string } {
  let json: unknown;
  try {
    json = call.arguments.trim() === "" ? {} : JSON.parse(call.arguments);
    // A gateway that encodes the arguments' JSON text once more sends a string of an object.
    if (typeof json === "string" && json.trim().startsWith("{")) json = JSON.parse(json);
  } catch (error) {
    return { ok: false, error: `arguments are not valid JSON (${(error as Error).message})` };
  }
  const input = note ? readNote(json, note) : json;
  const result = schema.safeParse(input);
  if (result.success) return { ok: true, value: result.data };
  const issues = result.error.issues.map((i) => {
    const path = i.path.join(".") || "(root)";
    // readNote dropped the optional fields' nulls: one left is a required field's.
    const isNull = note && i.path.length === 1 && valueAt(input, i.path) === null;
    return `${path}: ${isNull ? "required, and null is not a value" : i.message}`;
  });
  return { ok: false, error: `arguments do not match the schema: ${issues.join("; ")}` };
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let at = value;
  for (const key of path) {
    if (at === null || typeof at !== "object") return undefined;
    at = (at as Record<PropertyKey, unknown>)[key];
  }
  return at;
}
