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
      const calls = (choice.message.tool_calls ?? []).flatMap((call, index) =>
        call.type === "function"
          ? [
              {
                id: call.id || `call_${index}`,
                name: call.function?.name ?? "",
                arguments: call.function?.arguments ?? "",
              },
            ]
          : [],
      );
      return {
        content: choice.message.content ?? null,
        toolCalls: calls,
        usage: {
          promptTokens: response.usage?.prompt_tokens ?? 0,
          completionTokens: response.usage?.completion_tokens ?? 0,
        },
        model: response.model || request.model,
      };
    },
  };
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
