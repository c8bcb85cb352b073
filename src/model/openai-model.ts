import OpenAI from "openai";
import {
  CHARS_PER_ESTIMATED_TOKEN,
  estimatedTokens,
  type ModelPort,
  type ModelReply,
  type ModelRequest,
  messageChars,
  toolChars,
} from "../core/model.ts";
import { cleanJsonText, cleanText, shorten } from "../core/text.ts";
import { ConfigError, ModelBehaviorError, TransientError } from "../errors.ts";
import { leanFetch } from "../http/fetch.ts";
import { type Logger, maskSecrets } from "../log.ts";
import { toolCallsInText } from "./text-tool-calls.ts";

/**
 * The model port over Chat Completions tool calling: what OpenAI and OpenAI-compatible local
 * servers (Ollama, vLLM) both speak. The only file that imports `openai`.
 */
export function createOpenAIModel(options: {
  apiKey: string;
  baseURL?: string;
  maxRetries?: number;
  timeoutMs?: number;
  /** Hears, once per model, that the server sends no token usage. */
  log?: Pick<Logger, "warn">;
}): ModelPort & { listModels(): Promise<string[]> } {
  const client = new OpenAI({
    apiKey: options.apiKey,
    ...(options.baseURL && { baseURL: options.baseURL }),
    maxRetries: options.maxRetries ?? 2,
    timeout: options.timeoutMs ?? 60_000,
    fetch: leanFetch({ timeoutMs: options.timeoutMs ?? 60_000 }),
  });
  // Routes an agent's calls to the cache that holds its prefix. Most compatible servers ignore the
  // field; a strict one (Groq, Cerebras, Mistral) refuses the request: asked again without it, and from then
  // on never sent it.
  let cacheKeys = true;
  // Models whose server sent no usage: the operator is told once per model, not at every call.
  const unmetered = new Set<string>();
  const create = (request: ModelRequest) =>
    client.chat.completions.create({
      model: request.model,
      ...(cacheKeys && { prompt_cache_key: request.agentId }),
      messages: request.messages as OpenAI.Chat.Completions.ChatCompletionMessageParam[],
      ...(request.tools.length > 0 && {
        tools: request.tools.map((t) => ({
          type: "function" as const,
          function: { name: t.name, description: t.description, parameters: t.parameters },
        })),
      }),
    });
  return {
    /** The models the server lists (GET /models), for the check at start: asked once, briefly. */
    async listModels() {
      try {
        return await modelIds(client);
      } catch (error) {
        // Ollama's own root (http://localhost:11434) answers 404: its OpenAI API is under /v1.
        if (error instanceof OpenAI.NotFoundError && (await listsUnderV1(client)))
          throw new ConfigError(
            "the model server's OpenAI API is under /v1: add /v1 to the end of OPENAI_BASE_URL (http://localhost:11434/v1 for Ollama)",
            { cause: error },
          );
        throw classify(error);
      }
    },
    async complete(request: ModelRequest): Promise<ModelReply> {
      let response: OpenAI.Chat.Completions.ChatCompletion;
      try {
        response = await create(request).catch((error: unknown) => {
          if (!cacheKeys || !refusesCacheKey(error)) throw error;
          cacheKeys = false;
          return create(request);
        });
      } catch (error) {
        const unreadable = unreadableCall(error);
        if (unreadable === undefined) throw classify(error);
        return {
          ...NOTHING,
          model: request.model,
          unreadableCall: unreadable.said,
          usage: unreadableCallUsage(request, unreadable.attempt),
        };
      }
      const reply = replyOf(response, request);
      if (reply.usage.estimated && !unmetered.has(request.model)) {
        unmetered.add(request.model);
        options.log?.warn(
          { model: request.model, charsPerToken: CHARS_PER_ESTIMATED_TOKEN },
          "the model server sent no token usage for this model: its calls' tokens are estimated from their characters, and count toward the caps and cost as estimated",
        );
      }
      return reply;
    },
  };
}

async function modelIds(client: OpenAI): Promise<string[]> {
  const ids: string[] = [];
  for await (const model of client.models.list({ maxRetries: 0, timeout: 10_000 }))
    ids.push(model.id);
  return ids;
}

/** Whether the server lists its models one /v1 below the base URL, where Baton was not told to look. */
async function listsUnderV1(client: OpenAI): Promise<boolean> {
  const base = new URL(client.baseURL);
  if (base.search !== "" || /\/v1\/?$/.test(base.pathname)) return false;
  const below = client.withOptions({ baseURL: `${client.baseURL.replace(/\/+$/, "")}/v1` });
  return modelIds(below).then(
    () => true,
    () => false,
  );
}

const NOTHING = { content: null, toolCalls: [], usage: { promptTokens: 0, completionTokens: 0 } };

function replyOf(
  response: OpenAI.Chat.Completions.ChatCompletion,
  request: ModelRequest,
): ModelReply {
  const choice = response.choices?.[0];
  // A proxy passing an upstream hiccup through answers 200 with nothing in it, or with an error
  // body (OpenRouter, LiteLLM): retried, as a 500, with the server's words if it sent any.
  if (!choice?.message) {
    const said = textOf((response as { error?: { message?: unknown } }).error?.message);
    throw new TransientError(
      `the model server returned no message${said ? `: ${shorten(maskSecrets(said), SERVER_WORDS_MAX)}` : ""}`,
    );
  }
  // What a content filter leaves is a fragment it chose to show: never posted as the answer. The
  // model ran all the same: the call is counted, as the turn that stops the task.
  if (choice.finish_reason === "content_filter")
    return {
      content: null,
      toolCalls: [],
      withheld: true,
      usage: usageOf(response, request),
      model: cleanText(response.model || request.model),
    };
  let calls = (choice.message.tool_calls ?? []).flatMap((call, index) =>
    // Some compatible servers leave `type` out; anything else named (`custom`) is not ours.
    call.type === "function" || call.type === undefined
      ? [
          {
            id: cleanText(call.id || `call_${index}`),
            name: cleanText(String(call.function?.name ?? "")),
            // Some compatible servers send the arguments as an object, not a JSON string.
            arguments: cleanJsonText(asText(call.function?.arguments)),
          },
        ]
      : [],
  );
  // A cut-off reply is not an answer: half a sentence would be posted as done, and half a call
  // run. It is an unusable reply, and the model is asked again.
  const cutOff = choice.finish_reason === "length";
  let content = answerOf(choice.message);
  // A call the server's tool parser missed, left as the reply's text: a call, never the answer.
  const written = calls.length === 0 && content ? toolCallsInText(content) : undefined;
  if (written) {
    calls = written.map((call, index) => ({
      id: `call_text_${index}`,
      name: cleanText(call.name),
      arguments: cleanJsonText(call.arguments),
    }));
    content = null;
  }
  return {
    content,
    toolCalls: cutOff ? [] : uniqueIds(calls),
    ...(cutOff && { cutOff }),
    usage: usageOf(response, request),
    model: cleanText(response.model || request.model),
  };
}

/**
 * The call's tokens as the server counted them. A side it did not count (no `usage` at all, as
 * from older vLLM and llama.cpp builds and some gateways, a count left out, or 0 for characters
 * that were there) is estimated from the characters sent or received, so that the caps and the
 * cost still count the call; `estimated` says so.
 */
function usageOf(
  response: OpenAI.Chat.Completions.ChatCompletion,
  request: ModelRequest,
): ModelReply["usage"] {
  const usage = response.usage as { prompt_tokens?: unknown; completion_tokens?: unknown } | null;
  // Characters are counted only for a side the server did not count: not on every call.
  const received = () => receivedChars(response.choices?.[0]?.message);
  const prompt = counted(usage?.prompt_tokens, () => sentChars(request));
  const completion = counted(usage?.completion_tokens, received);
  return {
    promptTokens: prompt.tokens,
    completionTokens: completion.tokens,
    ...((prompt.estimated || completion.estimated) && { estimated: true as const }),
  };
}

/**
 * A call whose tool call the server could not read ran the model on the whole prompt, and is
 * billed, but its error body counts no tokens: estimated from what was sent and what the model
 * wrote, as for a server that sends no usage, so that a model that keeps failing its calls still
 * meets the caps.
 */
function unreadableCallUsage(request: ModelRequest, attempt: string): ModelReply["usage"] {
  return {
    promptTokens: estimatedTokens(sentChars(request)),
    completionTokens: estimatedTokens(attempt.length),
    estimated: true,
  };
}

/** The characters of a request: its messages and its tool definitions, all billed as prompt. */
function sentChars(request: ModelRequest): number {
  return messageChars(request.messages) + toolChars(request.tools);
}

/**
 * A side's tokens: the server's count, or an estimate from its characters when it sent none, or 0
 * of characters that were there.
 */
function counted(count: unknown, chars: () => number): { tokens: number; estimated: boolean } {
  if (typeof count === "number" && Number.isFinite(count) && count > 0)
    return { tokens: Math.round(count), estimated: false };
  const n = chars();
  if (count === 0 && n === 0) return { tokens: 0, estimated: false };
  return { tokens: estimatedTokens(n), estimated: true };
}

/** The characters the model wrote, as sent: its text, refusal, reasoning and calls, all billed. */
function receivedChars(message: unknown): number {
  const m = (message ?? {}) as Record<string, unknown>;
  let chars = 0;
  for (const field of ["content", "refusal", "reasoning_content", "reasoning"])
    chars += textOf(m[field])?.length ?? 0;
  const calls = Array.isArray(m.tool_calls) ? (m.tool_calls as unknown[]) : [];
  for (const call of calls) {
    const fn = (call as { function?: { name?: unknown; arguments?: unknown } } | null)?.function;
    chars += asText(fn?.name).length + asText(fn?.arguments).length;
  }
  return chars;
}

/**
 * Groq answers 400 `tool_use_failed` when the model wrote a call it could not parse: the model's
 * slip, not the request's, and asked again it usually writes it well. What the server said and
 * the model's attempt, short, and the attempt whole ("" when the body has none); undefined for
 * any other error.
 */
function unreadableCall(error: unknown): { said: string; attempt: string } | undefined {
  if (!(error instanceof OpenAI.APIError) || error.status !== 400) return undefined;
  if (error.code !== "tool_use_failed") return undefined;
  const attempt = textOf((error.error as { failed_generation?: unknown })?.failed_generation) ?? "";
  const words = attempt ? `${wordsOf(error)} The model wrote: ${attempt}` : wordsOf(error);
  return { said: shorten(cleanText(maskSecrets(words)), 2_000), attempt };
}

/**
 * One call per id: a call repeated under its id (a server that repeats what it streamed) is one
 * call, run once; a different call under a taken id gets an id of its own, and its own answer.
 */
function uniqueIds(calls: ModelReply["toolCalls"]): ModelReply["toolCalls"] {
  // Every id the model wrote is taken: a new id must not be one a later call of the reply has.
  const taken = new Set(calls.map((c) => c.id));
  const bodies = new Map<string, Set<string>>();
  const unique: ModelReply["toolCalls"] = [];
  for (const call of calls) {
    const body = `${call.name}\n${call.arguments}`;
    const earlier = bodies.get(call.id);
    if (earlier?.has(body)) continue;
    let id = call.id;
    if (earlier) {
      let n = 2;
      while (taken.has(`${call.id}_${n}`)) n++;
      id = `${call.id}_${n}`;
    }
    taken.add(id);
    bodies.set(call.id, (earlier ?? new Set()).add(body));
    unique.push({ ...call, id });
  }
  return unique;
}

/**
 * The reply's text, or its refusal: a refusal comes in its own field, with no content or "", and
 * is the agent's answer. Cleaned here, once, so no NUL or half emoji reaches the database.
 */
function answerOf(message: { content?: unknown; refusal?: unknown }): string | null {
  const content = withoutThinking(textOf(message.content));
  const refusal = textOf(message.refusal);
  const text = content?.trim() ? content : refusal?.trim() ? refusal : content;
  return text === undefined ? null : cleanText(text);
}

/**
 * A reasoning model behind a server with no reasoning parser (llama.cpp, vLLM, LM Studio) sends
 * its reasoning as a leading <think> block: notes for itself, never for the requester. A block
 * left open is all reasoning, the reply cut before any answer.
 */
function withoutThinking(text: string | undefined): string | undefined {
  if (text === undefined || !/^\s*<think>/.test(text)) return text;
  const close = text.indexOf("</think>");
  return close < 0 ? "" : text.slice(close + "</think>".length).trimStart();
}

/** Model output is unknown until read: content may come as text parts, arguments as an object. */
function textOf(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (Array.isArray(value))
    return value.map((part) => (typeof part?.text === "string" ? part.text : "")).join("");
  return undefined;
}

function asText(value: unknown): string {
  if (value === undefined || value === null) return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** A 400 (or Mistral's 422, `extra_forbidden`) that names the cache key field: the server does not know it. */
function refusesCacheKey(error: unknown): boolean {
  return (
    error instanceof OpenAI.APIError &&
    (error.status === 400 || error.status === 422) &&
    error.message.includes("prompt_cache_key")
  );
}

function classify(error: unknown): Error {
  if (error instanceof OpenAI.APIConnectionError)
    return new TransientError(`the model server could not be reached: ${wordsOf(error)}`, {
      cause: error,
    });
  if (error instanceof OpenAI.APIError) {
    const status = error.status ?? 0;
    if (status === 401 || status === 403)
      return new ConfigError("the model server refused the API key: check OPENAI_API_KEY", {
        cause: error,
      });
    if (status === 408 || status === 409 || status === 429 || status >= 500) {
      return new TransientError(`the model server answered ${status}: ${wordsOf(error)}`, {
        cause: error,
      });
    }
    return new ModelBehaviorError(
      `the model server rejected the request (${status}): ${wordsOf(error)}`,
      { cause: error },
    );
  }
  return error instanceof Error ? error : new Error(String(error));
}

/** Longer server words are a page or a dump, not a reason a thread can read. */
const SERVER_WORDS_MAX = 300;

/**
 * What the server said, fit for a thread's failure notice: a body that is not JSON (a proxy's HTML
 * page, nginx's 413) becomes its title or first line of text. Masked before the cut, so no part of
 * a key that a server echoes is left for the mask to miss.
 */
function wordsOf(error: InstanceType<typeof OpenAI.APIError>): string {
  let words = error.message;
  // The client puts a body that is not JSON after the status, as it was sent.
  if (error.status !== undefined && error.error === undefined) {
    const body = words.slice(words.startsWith(`${error.status} `) ? `${error.status} `.length : 0);
    const title = /<title[^>]*>([^<]*)<\/title>/i.exec(body)?.[1]?.trim();
    const line = body
      .replace(/<[^>]*>/g, "\n")
      .split("\n")
      .find((l) => l.trim() !== "");
    const said = title || line?.trim() || "(no readable body)";
    words = said.startsWith(String(error.status)) ? said : `${error.status} ${said}`;
  }
  return shorten(maskSecrets(words).replace(/\s+/g, " ").trim(), SERVER_WORDS_MAX);
}
