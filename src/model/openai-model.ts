import { setTimeout as delay } from "node:timers/promises";
import OpenAI from "openai";
import {
  CHARS_PER_ESTIMATED_TOKEN,
  type ModelPort,
  type ModelReply,
  type ModelRequest,
} from "../core/model.ts";
import { cleanText, shorten } from "../core/text.ts";
import { ConfigError, ModelBehaviorError, TransientError } from "../errors.ts";
import { leanFetch } from "../http/fetch.ts";
import { type Logger, maskSecrets } from "../log.ts";
import {
  headlineOf,
  replyOf,
  SERVER_WORDS_MAX,
  textOf,
  unreadableCallUsage,
} from "./completion-reply.ts";

/**
 * The model port over Chat Completions tool calling: what OpenAI and OpenAI-compatible local
 * servers (Ollama, vLLM) both speak. The only file that imports `openai` other than for its types
 * (completion-reply.ts reads the completions it returns).
 */
export function createOpenAIModel(options: {
  apiKey: string;
  baseURL?: string;
  maxRetries?: number;
  timeoutMs?: number;
  /** Hears, once per model, that the server sends no token usage, and of each long 429 waited out. */
  log?: Pick<Logger, "warn">;
  /** How a long 429 is waited out: the tests' clock stands in for a minute of waiting. */
  sleep?: (ms: number) => Promise<void>;
}): ModelPort & { listModels(): Promise<string[]> } {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const client = new OpenAI({
    apiKey: options.apiKey,
    ...(options.baseURL && { baseURL: options.baseURL }),
    maxRetries: options.maxRetries ?? 2,
    timeout: timeoutMs,
    fetch: leanFetch({ timeoutMs }),
  });
  // Routes an agent's calls to the cache that holds its prefix. Most compatible servers ignore the
  // field; a strict one (Groq, Cerebras, Mistral) refuses the request: asked again without it, and from then
  // on never sent it.
  let cacheKeys = true;
  // Models whose server sent no usage: the operator is told once per model, not at every call.
  const unmetered = new Set<string>();
  const sleep = options.sleep ?? ((ms: number) => delay(ms));
  // A rate limit that asks for more than a minute (a provider's per-minute or per-day tokens): the
  // client tries again at once, twice, and the job's backoff gives up within minutes. Waited out
  // here, the task goes on when the server said it may; the run's lease is renewed meanwhile.
  const create = async (request: ModelRequest) => {
    for (let waited = 0; ; ) {
      try {
        return await createOnce(request);
      } catch (error) {
        const waitMs = longRateLimitWait(error);
        if (waitMs === undefined || waited + waitMs > LONG_RATE_LIMIT_MAX_MS) throw error;
        waited += waitMs;
        options.log?.warn(
          { model: request.model, waitSeconds: Math.ceil(waitMs / 1000) },
          "the model server asked to wait before it answers again (429): waiting, then asking again",
        );
        await sleep(waitMs);
      }
    }
  };
  const createOnce = (request: ModelRequest) =>
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
        throw classify(error, LIST_TIMEOUT_MS);
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
        if (unreadable === undefined) throw classify(error, timeoutMs);
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

/**
 * Long 429s waited out in one call, in all. Longer is a quota, for the task's failure to tell with
 * the server's words; and a job runs 15 min before pg-boss takes it for lost (jobs/options.ts).
 */
const LONG_RATE_LIMIT_MAX_MS = 10 * 60_000;

/**
 * The wait a 429 asks for, when the client left it to Baton: over a minute (the client waits out a
 * shorter one itself, as it reads the same headers). Undefined for anything else.
 */
function longRateLimitWait(error: unknown): number | undefined {
  if (!(error instanceof OpenAI.APIError) || error.status !== 429) return undefined;
  const asked = retryAfterMs(error.headers as Headers | undefined);
  return asked !== undefined && asked > 60_000 ? asked : undefined;
}

/** `retry-after-ms`, else `retry-after` in seconds or as a date. */
function retryAfterMs(headers: Headers | undefined): number | undefined {
  const ms = Number.parseFloat(headers?.get("retry-after-ms") ?? "");
  if (Number.isFinite(ms)) return ms;
  const after = headers?.get("retry-after");
  if (!after) return undefined;
  const seconds = Number(after);
  const asked = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(after) - Date.now();
  return Number.isFinite(asked) ? asked : undefined;
}

/** The check at start asks briefly: a server slow to list its models does not hold the start up. */
const LIST_TIMEOUT_MS = 10_000;

async function modelIds(client: OpenAI): Promise<string[]> {
  const ids: string[] = [];
  for await (const model of client.models.list({ maxRetries: 0, timeout: LIST_TIMEOUT_MS }))
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

/** A 400 (or Mistral's 422, `extra_forbidden`) that names the cache key field: the server does not know it. */
function refusesCacheKey(error: unknown): boolean {
  return (
    error instanceof OpenAI.APIError &&
    (error.status === 400 || error.status === 422) &&
    error.message.includes("prompt_cache_key")
  );
}

/** `timeoutMs`: how long one answer may take (OPENAI_TIMEOUT_SECONDS). */
function classify(error: unknown, timeoutMs: number): Error {
  // The server was reached and is slow (a local model on a CPU): "could not be reached" would send
  // the operator to the network, when the setting to raise is the timeout.
  if (error instanceof OpenAI.APIConnectionTimeoutError)
    return new TransientError(
      `the model server did not answer within ${Math.round(timeoutMs / 1000)} s: a slow model needs a larger OPENAI_TIMEOUT_SECONDS`,
      { cause: error },
    );
  // A 200 whose body says it is JSON and is not (cut short by a proxy): the client's parse failed.
  if (error instanceof SyntaxError)
    return new TransientError(
      `the model server's answer is not a chat completion (JSON that does not parse: ${error.message})`,
      { cause: error },
    );
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
    const { title, line } = headlineOf(body);
    const said = title || line || "(no readable body)";
    words = said.startsWith(String(error.status)) ? said : `${error.status} ${said}`;
  }
  return shorten(maskSecrets(words).replace(/\s+/g, " ").trim(), SERVER_WORDS_MAX);
}
