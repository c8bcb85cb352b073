import { z } from "zod";
import { ENV_REFERENCE, type HttpToolConfig } from "../config/agents-schema.ts";
import { type ToolDefinition, ToolInputError } from "../core/tools/tool.ts";
import { ConfigError, TransientError } from "../errors.ts";
import { leanFetch } from "./fetch.ts";

type Env = Readonly<Record<string, string | undefined>>;

/** An answer larger than this is not read: no tool result the model can use is a megabyte. */
const MAX_ANSWER_BYTES = 1_000_000;
/** Statuses that say "not now" rather than "no": the call is tried again. */
const TRY_AGAIN = new Set([408, 425, 429]);

/**
 * The agents file's HTTP tools (`tools:`): each call POSTs the validated arguments as JSON to the
 * tool's URL and gives the answer to the model. The contract, for whoever writes the endpoint, is
 * in the README ("Your own tools"): a 2xx answer is the result; another 4xx refuses the call, its
 * `error` told to the model; 401 and 403 stop the task (Baton's credentials are wrong); 408, 429,
 * 5xx and no answer are tried again with backoff, under the same `Idempotency-Key`.
 */
export function httpTools(
  configs: readonly HttpToolConfig[],
  env: Env = process.env,
  fetchImpl: typeof fetch = leanFetch(),
): ToolDefinition[] {
  return configs.map((config) => httpTool(config, env, fetchImpl));
}

function httpTool(config: HttpToolConfig, env: Env, fetchImpl: typeof fetch): ToolDefinition {
  const { $schema: _dialect, ...parameters } = config.parameters;
  // Named by the URL as written: a `${NAME}` in it stays a name, never its value.
  const where = `${config.name} (${withoutQuery(config.url)})`;
  return {
    name: config.name,
    description: config.description,
    toolClass: config.class,
    external: true,
    input: z.fromJSONSchema(config.parameters as z.core.JSONSchema.JSONSchema),
    parameters,
    async run(ctx, args) {
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(config.headers))
        headers[name.toLowerCase()] = fromEnv(value, env, where);
      let answer: Response;
      try {
        answer = await fetchImpl(fromEnv(config.url, env, where), {
          method: "POST",
          headers: {
            ...headers,
            "content-type": "application/json",
            accept: "application/json",
            "idempotency-key": ctx.idempotencyKey,
          },
          body: JSON.stringify({
            tool: config.name,
            arguments: args,
            idempotency_key: ctx.idempotencyKey,
            task_id: ctx.taskId,
            agent_id: ctx.agentId,
          }),
          signal: AbortSignal.timeout(config.timeout),
        });
      } catch (error) {
        const reason =
          (error as Error).name === "TimeoutError"
            ? `no answer within ${config.timeout / 1000} s`
            : "could not be reached";
        throw new TransientError(`${where} ${reason}`, { cause: error });
      }
      const body = await readAnswer(answer);
      if (answer.ok) return body ?? { ok: true };
      if (answer.status === 401 || answer.status === 403)
        throw new ConfigError(
          `${where} refused Baton's credentials (HTTP ${answer.status}): check the tool's headers in the agents file`,
        );
      if (answer.status >= 400 && answer.status < 500 && !TRY_AGAIN.has(answer.status))
        throw new ToolInputError(refusal(body) ?? `refused the call (HTTP ${answer.status})`);
      throw new TransientError(`${where} answered HTTP ${answer.status}`);
    },
  };
}

/** `${NAME}` replaced by the environment's value; the file was checked, so a gap is a change since. */
function fromEnv(template: string, env: Env, where: string): string {
  return template.replace(ENV_REFERENCE, (_, name: string) => {
    const value = env[name];
    if (!value) throw new ConfigError(`${where}: the environment variable ${name} is not set`);
    return value;
  });
}

/** The answer's JSON (or its text), undefined when empty. */
async function readAnswer(answer: Response): Promise<unknown> {
  const length = Number(answer.headers.get("content-length") ?? 0);
  if (length > MAX_ANSWER_BYTES) {
    await answer.body?.cancel();
    throw new ToolInputError(`the answer is over ${MAX_ANSWER_BYTES} bytes; at most that is read`);
  }
  const text = await answer.text();
  if (text.length > MAX_ANSWER_BYTES)
    throw new ToolInputError(`the answer is over ${MAX_ANSWER_BYTES} bytes; at most that is read`);
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** What a refusal says: its `error` (or `message`), else its text. */
function refusal(body: unknown): string | undefined {
  if (typeof body === "string") return body.slice(0, 1_000);
  if (body && typeof body === "object") {
    const { error, message } = body as { error?: unknown; message?: unknown };
    const said =
      typeof error === "string" ? error : typeof message === "string" ? message : undefined;
    return (said ?? JSON.stringify(body)).slice(0, 1_000);
  }
  return undefined;
}

function withoutQuery(url: string): string {
  return url.split(/[?#]/)[0] ?? url;
}
