// An OpenAI-compatible Chat Completions server that plays a script, for driving the real openai client.
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { type ChatMessage as CoreMessage, messageChars } from "../../src/core/model.ts";

type ContentPart = { type: string; text?: string };
export type ChatMessage = {
  role: string;
  content?: string | ContentPart[] | null;
  name?: string;
  tool_calls?: { id: string; type: string; function: { name: string; arguments: string } }[];
  tool_call_id?: string;
};
export type ChatRequest = {
  model: string;
  messages: ChatMessage[];
  tools?: unknown[];
  tool_choice?: unknown;
  stream?: boolean;
  prompt_cache_key?: string | null;
} & Record<string, unknown>;

export type ScriptContext = {
  agentId: string | undefined;
  /** Index of this request among all requests the server received. */
  callIndex: number;
  /** Index of this request among those from the same agent. */
  agentCallIndex: number;
};
/** `arguments` as a string is sent verbatim, so malformed JSON can be scripted. */
export type ScriptedToolCall = {
  name: string;
  arguments: Record<string, unknown> | string;
  id?: string;
};
/**
 * `withoutUsage`: the answer carries no `usage`, as from servers that do not count tokens (older
 * vLLM and llama.cpp builds, some gateways).
 */
export type ScriptedReply =
  | { content: string; withoutUsage?: true }
  | { toolCalls: ScriptedToolCall[]; content?: string; withoutUsage?: true }
  | { status: number; error: string; retryAfter?: number }
  | { raw: unknown; status?: number };
export type Script = (
  request: ChatRequest,
  ctx: ScriptContext,
) => ScriptedReply | Promise<ScriptedReply>;

export type RecordedRequest = {
  body: ChatRequest;
  agentId: string | undefined;
  callIndex: number;
  /** Characters of message text (content plus tool-call arguments): what prompt size is judged by. */
  promptChars: number;
  at: number;
  /** HTTP status answered, and the error text when the script failed or scripted one. */
  status: number;
  error?: string;
};

/** Baton sends the calling agent's id as the prompt cache key; a script is chosen by it. */
export function agentIdOf(request: Pick<ChatRequest, "prompt_cache_key">): string | undefined {
  const key = request.prompt_cache_key;
  return typeof key === "string" && key ? key : undefined;
}

export function promptChars(request: Pick<ChatRequest, "messages">): number {
  let chars = 0;
  for (const m of request.messages) {
    chars += textOf(m.content).length;
    for (const call of m.tool_calls ?? []) chars += call.function.arguments.length;
  }
  return chars;
}

/**
 * The scripted model without its HTTP: answers a request's body as the server does, and records it.
 * The server below is this behind HTTP; a benchmark can also hand it to a client in-process.
 */
export function scriptedCompletions(script: Script) {
  const requests: RecordedRequest[] = [];
  const perAgent = new Map<string | undefined, number>();

  const complete = async (body: ChatRequest): Promise<Answer> => {
    const agentId = agentIdOf(body);
    const agentCallIndex = perAgent.get(agentId) ?? 0;
    perAgent.set(agentId, agentCallIndex + 1);
    const record: RecordedRequest = {
      body,
      agentId,
      callIndex: requests.length,
      promptChars: promptChars(body),
      at: Date.now(),
      status: 200,
    };
    requests.push(record);
    let answer: Answer;
    const refused = refusal(body);
    if (refused) {
      answer = errorAnswer(400, refused, "invalid_request_error");
    } else
      try {
        const reply = await script(body, { agentId, callIndex: record.callIndex, agentCallIndex });
        answer = toAnswer(reply, body, record.promptChars);
      } catch (err) {
        answer = errorAnswer(500, `model script failed: ${(err as Error).message}`);
      }
    record.status = answer.status;
    const error = (answer.body as { error?: { message?: string } }).error?.message;
    if (answer.status !== 200 && error) record.error = error;
    return answer;
  };
  return { requests, complete };
}

/**
 * What OpenAI's server refuses with a 400 before any model sees the request, in its words: a
 * conversation whose tool calls and tool answers do not pair up, an assistant message with neither
 * text nor calls, a tool name it does not allow. A scripted reply cannot hide such a request.
 */
export function refusal(body: ChatRequest): string | undefined {
  const messages = body.messages ?? [];
  for (const [i, m] of messages.entries()) {
    if (m.role === "tool") {
      let j = i - 1;
      while (j >= 0 && messages[j]?.role === "tool") j--;
      const calls = messages[j]?.role === "assistant" ? (messages[j]?.tool_calls ?? []) : [];
      if (!calls.some((c) => c.id === m.tool_call_id))
        return `Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'. (messages[${i}], tool_call_id ${m.tool_call_id})`;
    }
    if (m.role !== "assistant") continue;
    const calls = m.tool_calls ?? [];
    if (calls.length === 0 && (m.content === null || m.content === undefined))
      return `Invalid value for 'content': expected a string, got null. (messages[${i}])`;
    const answered = new Set<string | undefined>();
    for (let k = i + 1; messages[k]?.role === "tool"; k++) answered.add(messages[k]?.tool_call_id);
    const missing = calls.filter((c) => !answered.has(c.id)).map((c) => c.id);
    if (missing.length > 0)
      return `An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: ${missing.join(", ")} (messages[${i}])`;
  }
  for (const tool of (body.tools ?? []) as { function?: { name?: string } }[]) {
    const name = tool.function?.name ?? "";
    if (!/^[a-zA-Z0-9_-]{1,64}$/.test(name))
      return `Invalid 'tools[].function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'. (${name})`;
  }
  return undefined;
}

/**
 * The model requests since the last ask: how many, the characters of their messages (as Baton
 * counts model_calls.request_chars), and the first that failed. The benches count with it.
 */
export function modelCounter(requests: readonly RecordedRequest[]) {
  let counted = 0;
  return () => {
    const fresh = requests.slice(counted);
    counted += fresh.length;
    const failed = fresh.find((r) => r.status !== 200);
    return {
      calls: fresh.length,
      chars: fresh.reduce((n, r) => n + messageChars(r.body.messages as CoreMessage[]), 0),
      ...(failed && { error: failed.error ?? `model answered ${failed.status}` }),
    };
  };
}

export async function startModelServer(script: Script, options: { models?: string[] } = {}) {
  const { requests, complete } = scriptedCompletions(script);
  const models = options.models ?? ["gpt-4.1-mini", "gpt-4.1"];

  const route = async (req: IncomingMessage): Promise<Answer> => {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    if (!/^Bearer \S+/.test(req.headers.authorization ?? "")) {
      return errorAnswer(401, "You didn't provide an API key.", "invalid_request_error");
    }
    if (req.method === "GET" && path === "/v1/models") {
      const data = models.map((id) => ({
        id,
        object: "model",
        created: 1_700_000_000,
        owned_by: "test",
      }));
      return { status: 200, body: { object: "list", data } };
    }
    if (req.method !== "POST" || path !== "/v1/chat/completions") {
      return errorAnswer(
        404,
        `Unknown request URL: ${req.method} ${path}.`,
        "invalid_request_error",
      );
    }
    const body = JSON.parse(await readBody(req)) as ChatRequest;
    if (body.stream)
      return errorAnswer(400, "the test model server does not stream", "invalid_request_error");
    if (!Array.isArray(body.messages))
      return errorAnswer(400, "messages is required", "invalid_request_error");
    return complete(body);
  };

  const server = createServer((req, res) => {
    route(req)
      .catch((err: unknown) => errorAnswer(500, `model server: ${String(err)}`))
      .then((answer) => send(res, answer));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    /** What `new OpenAI({ baseURL })` takes. */
    baseURL: `${url}/v1`,
    requests,
    requestsFor: (agentId: string) => requests.filter((r) => r.agentId === agentId),
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

export type ModelServer = Awaited<ReturnType<typeof startModelServer>>;

export type AgentReply = ScriptedReply | Script;
export type AgentScript = Script & {
  /** Replies not yet consumed, per agent; assert it is all zeros at the end of a scenario. */
  remaining(): Record<string, number>;
};

/** Each agent gets its replies in order; running out is a 500 that names the agent. */
export function scriptByAgent(replies: Record<string, AgentReply[]>): AgentScript {
  const used = new Map<string, number>();
  const script: Script = (request, ctx) => {
    const id = ctx.agentId;
    if (id === undefined) {
      throw new Error("request has no prompt_cache_key naming the calling agent");
    }
    const list = replies[id];
    if (!list) throw new Error(`no replies scripted for agent "${id}"`);
    const n = used.get(id) ?? 0;
    const next = list[n];
    if (!next) throw new Error(`agent "${id}" ran out of scripted replies (it had ${list.length})`);
    used.set(id, n + 1);
    return typeof next === "function" ? next(request, ctx) : next;
  };
  const remaining = () =>
    Object.fromEntries(
      Object.entries(replies).map(([id, list]) => [id, list.length - (used.get(id) ?? 0)]),
    );
  return Object.assign(script, { remaining });
}

export type Answer = { status: number; body: unknown; headers?: Record<string, string> };

function toAnswer(reply: ScriptedReply, request: ChatRequest, inputChars: number): Answer {
  if ("raw" in reply) return { status: reply.status ?? 200, body: reply.raw };
  if ("status" in reply) {
    const answer = errorAnswer(reply.status, reply.error);
    if (reply.retryAfter !== undefined)
      answer.headers = { "retry-after": String(reply.retryAfter) };
    return answer;
  }
  const toolCalls = "toolCalls" in reply ? reply.toolCalls : [];
  const calls = toolCalls.map((c) => ({
    id: c.id ?? `call_${randomBytes(12).toString("base64url")}`,
    type: "function",
    function: {
      name: c.name,
      arguments: typeof c.arguments === "string" ? c.arguments : JSON.stringify(c.arguments),
    },
  }));
  const content = reply.content ?? null;
  const outputChars =
    (content ?? "").length + calls.reduce((n, c) => n + c.function.arguments.length, 0);
  const promptTokens = Math.ceil(inputChars / 4);
  const completionTokens = Math.max(1, Math.ceil(outputChars / 4));
  return {
    status: 200,
    body: {
      id: `chatcmpl-${randomBytes(15).toString("base64url")}`,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: request.model,
      choices: [
        {
          index: 0,
          message: {
            role: "assistant",
            content,
            refusal: null,
            annotations: [],
            ...(calls.length > 0 ? { tool_calls: calls } : {}),
          },
          logprobs: null,
          finish_reason: calls.length > 0 ? "tool_calls" : "stop",
        },
      ],
      ...(!reply.withoutUsage && {
        usage: {
          prompt_tokens: promptTokens,
          completion_tokens: completionTokens,
          total_tokens: promptTokens + completionTokens,
          prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
          completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0 },
        },
      }),
      service_tier: "default",
      system_fingerprint: "fp_baton_test",
    },
  };
}

function errorAnswer(status: number, message: string, type?: string): Answer {
  const kind =
    type ??
    (status === 429
      ? "rate_limit_exceeded"
      : status >= 500
        ? "server_error"
        : "invalid_request_error");
  return { status, body: { error: { message, type: kind, param: null, code: null } } };
}

function send(res: ServerResponse, answer: Answer) {
  res.writeHead(answer.status, {
    "content-type": "application/json",
    "x-request-id": `req_${randomBytes(8).toString("hex")}`,
    ...answer.headers,
  });
  res.end(JSON.stringify(answer.body));
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function textOf(content: ChatMessage["content"]): string {
  if (typeof content === "string") return content;
  return (content ?? []).map((p) => p.text ?? "").join("");
}
