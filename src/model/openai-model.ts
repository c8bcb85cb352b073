import OpenAI from "openai";
import type { ModelPort, ModelReply, ModelRequest } from "../core/model.ts";
import { ConfigError, ModelBehaviorError, TransientError } from "../errors.ts";
import { leanFetch } from "../http/fetch.ts";

/**
 * The model port over Chat Completions tool calling: what OpenAI and OpenAI-compatible local
 * servers (Ollama, vLLM) both speak. The only file that imports `openai`.
 */
export function createOpenAIModel(options: {
  apiKey: string;
  baseURL?: string;
  maxRetries?: number;
  timeoutMs?: number;
}): ModelPort {
  const client = new OpenAI({
    apiKey: options.apiKey,
    ...(options.baseURL && { baseURL: options.baseURL }),
    maxRetries: options.maxRetries ?? 2,
    timeout: options.timeoutMs ?? 60_000,
    fetch: leanFetch({ timeoutMs: options.timeoutMs ?? 60_000 }),
  });
  return {
    async complete(request: ModelRequest): Promise<ModelReply> {
      let response: OpenAI.Chat.Completions.ChatCompletion;
      try {
        response = await client.chat.completions.create({
          model: request.model,
          // Routes an agent's calls to the cache that holds its prefix; compatible servers ignore it.
          prompt_cache_key: request.agentId,
          messages: request.messages as OpenAI.Chat.Completions.ChatCompletionMessageParam[],
          ...(request.tools.length > 0 && {
            tools: request.tools.map((t) => ({
              type: "function" as const,
              function: { name: t.name, description: t.description, parameters: t.parameters },
            })),
          }),
        });
      } catch (error) {
        throw classify(error);
      }
      const choice = response.choices?.[0];
      if (!choice?.message) throw new ModelBehaviorError("the model returned no message");
      // A cut-off reply is not an answer: half a sentence would be posted as done.
      if (choice.finish_reason === "length")
        throw new ModelBehaviorError(
          "the model's reply was cut off at its output limit (finish_reason=length)",
        );
      const calls = (choice.message.tool_calls ?? []).flatMap((call, index) =>
        call.type === "function"
          ? [
              {
                id: call.id || `call_${index}`,
                name: String(call.function?.name ?? ""),
                // Some compatible servers send the arguments as an object, not a JSON string.
                arguments: asText(call.function?.arguments),
              },
            ]
          : [],
      );
      return {
        // A refusal comes in its own field, with no content: it is the agent's answer.
        content: textOf(choice.message.content) ?? textOf(choice.message.refusal) ?? null,
        toolCalls: uniqueIds(calls),
        usage: {
          promptTokens: response.usage?.prompt_tokens ?? 0,
          completionTokens: response.usage?.completion_tokens ?? 0,
        },
        model: response.model || request.model,
      };
    },
  };
}

/**
 * One call per id: a call repeated under its id (a server that repeats what it streamed) is one
 * call, run once; a different call under a taken id gets an id of its own, and its own answer.
 */
function uniqueIds(calls: ModelReply["toolCalls"]): ModelReply["toolCalls"] {
  const seen = new Map<string, string>();
  const unique: ModelReply["toolCalls"] = [];
  for (const [index, call] of calls.entries()) {
    const body = `${call.name}\n${call.arguments}`;
    const earlier = seen.get(call.id);
    if (earlier === body) continue;
    const id = earlier === undefined ? call.id : `${call.id}_${index}`;
    seen.set(id, body);
    unique.push({ ...call, id });
  }
  return unique;
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

function classify(error: unknown): Error {
  if (error instanceof OpenAI.APIConnectionError)
    return new TransientError(`the model server could not be reached: ${error.message}`, {
      cause: error,
    });
  if (error instanceof OpenAI.APIError) {
    const status = error.status ?? 0;
    if (status === 401 || status === 403)
      return new ConfigError("the model server refused the API key: check OPENAI_API_KEY", {
        cause: error,
      });
    if (status === 408 || status === 409 || status === 429 || status >= 500) {
      return new TransientError(`the model server answered ${status}: ${error.message}`, {
        cause: error,
      });
    }
    return new ModelBehaviorError(
      `the model server rejected the request (${status}): ${error.message}`,
      { cause: error },
    );
  }
  return error instanceof Error ? error : new Error(String(error));
}
