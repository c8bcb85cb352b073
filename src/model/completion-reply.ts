import type OpenAI from "openai";
import {
  estimatedTokens,
  type ModelReply,
  type ModelRequest,
  messageChars,
  toolChars,
} from "../core/model.ts";
import { cleanJsonText, cleanText, shorten } from "../core/text.ts";
import { TransientError } from "../errors.ts";
import { maskSecrets } from "../log.ts";
import { toolCallsInText } from "./text-tool-calls.ts";

/** Longer server words are a page or a dump, not a reason a thread can read. */
export const SERVER_WORDS_MAX = 300;

/** A Chat Completion read as the port's reply: text, tool calls with ids of their own, usage. */
export function replyOf(
  response: OpenAI.Chat.Completions.ChatCompletion,
  request: ModelRequest,
): ModelReply {
  // The client hands on whatever a 200 carried: an empty body, a page, JSON that is no object.
  if (typeof response !== "object" || response === null) throw notACompletion(response);
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
 * A 200 that is no chat completion, in words: a web page or text says a base URL that is not the
 * API (a web app's, a proxy's login), an empty body a proxy's hiccup. Retried, as a 500 is.
 */
function notACompletion(body: unknown): TransientError {
  let what = body === undefined || body === "" ? "an empty body" : String(body);
  let hint = "";
  if (typeof body === "string" && body.trim() !== "") {
    const { title, line } = headlineOf(body);
    what = title ? `a page titled "${title}"` : `text: ${line ?? ""}`;
    hint = ": check OPENAI_BASE_URL";
  }
  return new TransientError(
    `the model server's answer is not a chat completion (${shorten(cleanText(maskSecrets(what)), SERVER_WORDS_MAX)})${hint}`,
  );
}

/** What a body that is not JSON says first: its HTML title, and its first line of text. */
export function headlineOf(body: string): { title?: string; line?: string } {
  const title = /<title[^>]*>([^<]*)<\/title>/i.exec(body)?.[1]?.trim();
  const line = body
    .replace(/<[^>]*>/g, "\n")
    .split("\n")
    .find((l) => l.trim() !== "")
    ?.trim();
  return { ...(title && { title }), ...(line && { line }) };
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
export function unreadableCallUsage(request: ModelRequest, attempt: string): ModelReply["usage"] {
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
 * left open is all reasoning, the reply cut before any answer. A chat template that opens the
 * block in the prompt (DeepSeek-R1's, QwQ's) leaves the reply only its close: all before it is
 * reasoning too.
 */
function withoutThinking(text: string | undefined): string | undefined {
  if (text === undefined) return text;
  const close = text.indexOf("</think>");
  const opened = /^\s*<think>/.test(text);
  if (!opened && (close < 0 || text.slice(0, close).includes("<think>"))) return text;
  return close < 0 ? "" : text.slice(close + "</think>".length).trimStart();
}

/** Model output is unknown until read: content may come as text parts, arguments as an object. */
export function textOf(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (Array.isArray(value))
    return value.map((part) => (typeof part?.text === "string" ? part.text : "")).join("");
  return undefined;
}

function asText(value: unknown): string {
  if (value === undefined || value === null) return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}
