/** The model port: the runtime asks for one completion; only src/model/ talks to a provider. */
export interface ToolCallMessage {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

export type ChatMessage =
  | { role: "system"; content: string }
  | { role: "user"; content: string }
  | { role: "assistant"; content: string | null; tool_calls?: ToolCallMessage[] }
  | { role: "tool"; tool_call_id: string; content: string };

export interface ToolSpec {
  name: string;
  description: string;
  parameters: Record<string, unknown>;
}

export interface ModelRequest {
  model: string;
  /** The calling agent: its calls share one prefix (its instructions), so it keys prompt caching. */
  agentId: string;
  messages: ChatMessage[];
  tools: ToolSpec[];
}

export interface ModelReply {
  content: string | null;
  toolCalls: { id: string; name: string; arguments: string }[];
  usage: {
    promptTokens: number;
    completionTokens: number;
    /** The server sent no count for a side: it was estimated from characters (see estimatedTokens). */
    estimated?: true;
  };
  model: string;
  /** Stopped at the output limit: not an answer (half a sentence), and its calls are dropped. */
  cutOff?: true;
  /** Stopped by the server's content filter: what it left is dropped, and the task stops. */
  withheld?: true;
  /** The server could not read the model's tool call (Groq's `tool_use_failed`): what it said. */
  unreadableCall?: string;
}

export interface ModelPort {
  complete(request: ModelRequest): Promise<ModelReply>;
}

/** USD per million tokens of one model. */
export interface ModelPrice {
  input_per_million: number;
  output_per_million: number;
}
/** The agents file's `prices`, by model name. */
export type ModelPrices = Readonly<Record<string, ModelPrice>>;

/** Built in; the agents file's `prices` come first and price any other model (a local one). */
const PRICES: ModelPrices = {
  "gpt-4o-mini": { input_per_million: 0.15, output_per_million: 0.6 },
  "gpt-4o": { input_per_million: 2.5, output_per_million: 10 },
  "gpt-4.1": { input_per_million: 2, output_per_million: 8 },
  "gpt-4.1-mini": { input_per_million: 0.4, output_per_million: 1.6 },
  "gpt-4.1-nano": { input_per_million: 0.1, output_per_million: 0.4 },
  "gpt-5": { input_per_million: 1.25, output_per_million: 10 },
  "gpt-5-mini": { input_per_million: 0.25, output_per_million: 2 },
};

/** A model's price, undefined when unknown. A dated snapshot ("gpt-4o-2024-08-06") costs its model's. */
export function priceOf(model: string, prices: ModelPrices = {}): ModelPrice | undefined {
  const undated = model.replace(/-\d{4}-\d{2}-\d{2}$/, "");
  // Own keys only: a model named "constructor" must not find Object's.
  const own = (table: ModelPrices, key: string) =>
    Object.hasOwn(table, key) ? table[key] : undefined;
  return own(prices, model) ?? own(prices, undated) ?? own(PRICES, model) ?? own(PRICES, undated);
}

/**
 * What one reply cost, in USD. `configured`: the agent's model, priced when the server answers
 * under another name than the one asked for; a model with no known price costs 0 (the agents
 * file refuses a USD cap on one).
 */
export function costUsd(
  model: string,
  usage: ModelReply["usage"],
  prices: ModelPrices = {},
  configured?: string,
): number {
  const price =
    priceOf(model, prices) ?? (configured === undefined ? undefined : priceOf(configured, prices));
  if (!price) return 0;
  return (
    (usage.promptTokens * price.input_per_million +
      usage.completionTokens * price.output_per_million) /
    1_000_000
  );
}

/**
 * Characters per token when a server sends no usage (an older vLLM or llama.cpp, some gateways).
 * English runs near 4 characters a token in OpenAI's tokenizers, code and JSON nearer 3: 3 counts
 * high, so a cap binds early rather than never.
 */
export const CHARS_PER_ESTIMATED_TOKEN = 3;

/** The tokens `chars` characters are counted as when the server did not say: 1 per 3, rounded up. */
export function estimatedTokens(chars: number): number {
  return Math.ceil(chars / CHARS_PER_ESTIMATED_TOKEN);
}

/** The characters of a request's tool definitions, sent with every call and billed as prompt. */
export function toolChars(tools: readonly ToolSpec[]): number {
  let chars = 0;
  for (const tool of tools)
    chars += tool.name.length + tool.description.length + JSON.stringify(tool.parameters).length;
  return chars;
}

export function messageChars(messages: readonly ChatMessage[]): number {
  let chars = 0;
  for (const message of messages) {
    chars += message.content?.length ?? 0;
    if (message.role === "assistant") {
      for (const call of message.tool_calls ?? [])
        chars += call.function.name.length + call.function.arguments.length;
    }
  }
  return chars;
}
