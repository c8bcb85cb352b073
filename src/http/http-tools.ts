import { type Dispatcher, request } from "undici";
import { z } from "zod";
import { ENV_REFERENCE, type HttpToolConfig } from "../config/agents-schema.ts";
import { cleanText, decodedOrAsIs } from "../core/text.ts";
import { type ToolDefinition, ToolInputError } from "../core/tools/tool.ts";
import { ConfigError, TransientError } from "../errors.ts";
import { maskSecrets, registerSecrets } from "../log.ts";
import { dispatcherFor } from "./fetch.ts";

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
 * A value filled in from `${NAME}` never comes back out: an endpoint that echoes its request (a
 * debug echo, an error that quotes the header) has it masked before the model, the ledger or Slack.
 */
export function httpTools(
  configs: readonly HttpToolConfig[],
  env: Env = process.env,
): ToolDefinition[] {
  return configs.map((config) => httpTool(config, env));
}

function httpTool(config: HttpToolConfig, env: Env): ToolDefinition {
  const { $schema: _dialect, ...parameters } = config.parameters;
  const dispatcher = dispatcherFor(config.timeout);
  // Named by the URL as written: a `${NAME}` in it stays a name, never its value.
  const where = `${config.name} (${withoutQuery(config.url)})`;
  const hosts = hostVariables(config.url);
  return {
    name: config.name,
    description: config.description,
    ...(config.label && { label: config.label }),
    toolClass: config.class,
    external: true,
    input: z.fromJSONSchema(config.parameters as z.core.JSONSchema.JSONSchema),
    parameters,
    async run(ctx, args) {
      const secrets: string[] = [];
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(config.headers))
        headers[name.toLowerCase()] = fromEnv(value, env, where, (filled) => {
          if (!PLAIN_HEADER.test(name) || CREDENTIAL_NAME.test(filled.name))
            secrets.push(filled.value);
        });
      const url = fromEnv(config.url, env, where, (filled) => {
        if (
          !hosts.has(filled.name) ||
          !isOnlyHost(filled.value) ||
          CREDENTIAL_NAME.test(filled.name)
        )
          secrets.push(filled.value);
      });
      // As sent, and as an echo of the URL may spell it.
      registerSecrets(secrets.flatMap((v) => [v, encodeURI(v), encodeURIComponent(v)]));
      let status: number;
      let location: string | undefined;
      let body: unknown;
      try {
        const answer = await request(url, {
          method: "POST",
          headers: {
            ...headers,
            "content-type": "application/json",
            accept: "application/json",
            // The answer is read as it comes, up to its cap: not compressed.
            "accept-encoding": "identity",
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
          dispatcher,
        });
        status = answer.statusCode;
        location = [answer.headers.location].flat()[0];
        body = masked(await readAnswer(answer));
      } catch (error) {
        if (error instanceof ToolInputError) throw error;
        const reason =
          (error as Error).name === "TimeoutError"
            ? `no answer within ${config.timeout / 1000} s`
            : "could not be reached";
        throw new TransientError(`${where} ${reason}`, { cause: error });
      }
      if (status >= 200 && status < 300) return body ?? { ok: true };
      // Not followed: a call that writes goes where the agents file says, or nowhere.
      if (status >= 300 && status < 400)
        throw new ConfigError(
          `${where} redirects (HTTP ${status}${redirectTarget(location, url)}): set the URL it redirects to in the agents file`,
        );
      if (status === 401 || status === 403)
        throw new ConfigError(
          `${where} refused Baton's credentials (HTTP ${status}): check the tool's headers in the agents file`,
        );
      if (status >= 400 && status < 500 && !TRY_AGAIN.has(status))
        throw new ToolInputError(refusal(body) ?? `refused the call (HTTP ${status})`);
      throw new TransientError(`${where} answered HTTP ${status}`);
    },
  };
}

/**
 * Which `${NAME}` values are secrets, masked wherever they come back: all of them, except a value
 * that can only be an ordinary word of an answer. That is one put into a header that never carries
 * credentials (an API version such as `Stripe-Version: 2024-06-20`, which would otherwise mask
 * every date equal to it), or one that is only the URL's host (whose links and redirects must stay
 * readable); in both cases unless the variable's own name says it is a credential.
 */
const PLAIN_HEADER = /(^|-)version$|^accept(-language)?$|^user-agent$|^content-type$/i;
const CREDENTIAL_NAME = /key|token|secret|pass|auth|cred|sign|cookie|session|private/i;

/**
 * The `${NAME}`s written where the URL's host goes (`https://${CRM_HOST}/find`, or a whole
 * `${CRM_URL}/find`). Only there is a value the host: one in the path or the query
 * (`?appid=${WEATHER_APPID}`) is a credential however plain its shape, and an endpoint's 404 that
 * quotes the URL it was sent would hand it to the model.
 */
function hostVariables(template: string): Set<string> {
  const hosts = new Set<string>();
  const elsewhere = new Set<string>();
  for (const found of template.matchAll(ENV_REFERENCE)) {
    const before = template.slice(0, found.index);
    const after = template.slice(found.index + found[0].length);
    const inHost =
      /^(?:https?:\/\/)?[A-Za-z0-9.-]*$/i.test(before) && /^[A-Za-z0-9.-]*(?:[:/?#]|$)/.test(after);
    (inHost ? hosts : elsewhere).add(found[1] ?? "");
  }
  return new Set([...hosts].filter((name) => !elsewhere.has(name)));
}

/** `crm.internal`, `crm.internal:8080` or `https://crm.internal/`: a host, and nothing after it. */
function isOnlyHost(value: string): boolean {
  if (/^[A-Za-z0-9.-]+(:\d+)?$/.test(value)) return true;
  if (!/^https?:\/\//i.test(value) || !URL.canParse(value)) return false;
  const url = new URL(value);
  return url.pathname === "/" && !url.search && !url.hash && !url.username && !url.password;
}

/**
 * `${NAME}` replaced by the environment's value; the file was checked, so a gap is a change since.
 * Trimmed, as Baton's own variables are: a value from a file or a secret store often ends in a
 * newline, which would break the header or URL it is put into.
 */
function fromEnv(
  template: string,
  env: Env,
  where: string,
  filled: (variable: { name: string; value: string }) => void,
): string {
  return template.replace(ENV_REFERENCE, (_, name: string) => {
    const value = env[name]?.trim();
    if (!value) throw new ConfigError(`${where}: the environment variable ${name} is not set`);
    filled({ name, value });
    return value;
  });
}

/**
 * An answer with every secret masked in its text, or in each string (and key) of its JSON, and
 * cleaned as a model's reply is: a NUL (a fixed-width field of an old system) would fail the
 * turn's write to Postgres on every retry.
 */
function masked(value: unknown): unknown {
  if (typeof value === "string") return maskSecrets(cleanText(value));
  if (Array.isArray(value)) return value.map(masked);
  if (value && typeof value === "object")
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [maskSecrets(cleanText(k)), masked(v)]),
    );
  return value;
}

/** Where a redirect points, without the user info or query that may carry credentials, masked. */
function redirectTarget(location: string | undefined, from: string): string {
  if (!location || !URL.canParse(location, from)) return "";
  const { origin, pathname } = new URL(location, from);
  return ` to ${maskSecrets(`${origin}${decodedOrAsIs(pathname)}`).slice(0, 200)}`;
}

/** The answer's JSON (or its text), undefined when empty; read up to a megabyte, no further. */
async function readAnswer(answer: Dispatcher.ResponseData): Promise<unknown> {
  const tooBig = () => {
    answer.body.destroy();
    return new ToolInputError(`the answer is over ${MAX_ANSWER_BYTES} bytes; at most that is read`);
  };
  if (Number(answer.headers["content-length"] ?? 0) > MAX_ANSWER_BYTES) throw tooBig();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of answer.body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_ANSWER_BYTES) throw tooBig();
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8");
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
