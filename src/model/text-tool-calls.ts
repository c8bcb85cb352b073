/**
 * A small local model's tool call written as its reply's text, which the server's tool parser
 * missed (Ollama, vLLM, llama.cpp, LM Studio): Hermes' `<tool_call>` tags, Mistral's `[TOOL_CALLS]`
 * (a JSON list, or from Mistral Small 3.2 and Magistral on, `name[ARGS]{…}`), Llama 3's
 * `<|python_tag|>` and `parameters`, a code fence, or the bare JSON. Posted, it would show the
 * requester raw JSON as the answer and close the task with nothing done; read as calls, they go
 * through the allowlist like any other. Only a reply that is nothing but calls is read so.
 */
export function toolCallsInText(text: string): { name: string; arguments: string }[] | undefined {
  let body = text.trim();
  const fence = /^```[a-z]*\n([\s\S]*?)\n?```$/i.exec(body);
  if (fence) body = (fence[1] ?? "").trim();
  if (/^\[TOOL_CALLS\]\s*[A-Za-z_]/.test(body)) return namedCalls(body);
  body = body.replace(/^(?:<\|python_tag\|>|\[TOOL_CALLS\])\s*/, "");
  const tagged = body.startsWith("<tool_call>");
  const parts = tagged ? taggedParts(body) : [body];
  if (!parts) return undefined;
  const calls: { name: string; arguments: string }[] = [];
  for (const part of parts) {
    let json: unknown;
    try {
      json = JSON.parse(part);
    } catch {
      return undefined;
    }
    for (const item of Array.isArray(json) ? json : [json]) {
      const call = callOf(item);
      if (!call) return undefined;
      calls.push(call);
    }
  }
  return calls.length > 0 ? calls : undefined;
}

/**
 * Mistral's later form, one `[TOOL_CALLS]name[ARGS]{…}` per call (a `[CALL_ID]id` may come before
 * the `[ARGS]`): the calls, when the text holds nothing else.
 */
function namedCalls(text: string): { name: string; arguments: string }[] | undefined {
  const calls: { name: string; arguments: string }[] = [];
  for (const part of text.split("[TOOL_CALLS]").slice(1)) {
    const call = /^\s*([\w.-]+)(?:\[CALL_ID\]\w+)?\[ARGS\]([\s\S]*)$/.exec(part);
    if (!call) return undefined;
    let args: unknown;
    try {
      args = JSON.parse(call[2] ?? "");
    } catch {
      return undefined;
    }
    if (typeof args !== "object" || args === null || Array.isArray(args)) return undefined;
    calls.push({ name: call[1] ?? "", arguments: JSON.stringify(args) });
  }
  return calls;
}

/** The bodies of `<tool_call>` blocks, when the text holds nothing else. */
function taggedParts(text: string): string[] | undefined {
  const parts: string[] = [];
  const rest = text.replace(/<tool_call>([\s\S]*?)(?:<\/tool_call>|$)/g, (_all, inner: string) => {
    parts.push(inner.trim());
    return "";
  });
  return rest.trim() === "" ? parts : undefined;
}

/**
 * `{ name, parameters: { type: "object", properties } }` is a tool's definition, as a model explaining
 * one (or writing the code sample asked of it) shows it: an answer, not a call with those arguments.
 */
function isJsonSchema(input: object): boolean {
  const { type, properties } = input as Record<string, unknown>;
  return type === "object" && typeof properties === "object" && properties !== null;
}

/** `{ name, arguments | parameters }`, nothing else but an id or type; arguments an object. */
function callOf(item: unknown): { name: string; arguments: string } | undefined {
  if (typeof item !== "object" || item === null || Array.isArray(item)) return undefined;
  const { name, arguments: args, parameters, ...rest } = item as Record<string, unknown>;
  const extra = Object.keys(rest).filter((key) => key !== "id" && key !== "type");
  const input = args ?? parameters;
  if (typeof name !== "string" || name === "" || extra.length > 0) return undefined;
  if (typeof input === "string") return { name, arguments: input };
  if (typeof input !== "object" || input === null || Array.isArray(input)) return undefined;
  if (isJsonSchema(input)) return undefined;
  return { name, arguments: JSON.stringify(input) };
}
