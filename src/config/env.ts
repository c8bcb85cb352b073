import { z } from "zod";
import { decodedOrAsIs } from "../core/text.ts";
import { ConfigError } from "../errors.ts";
import { type Misspelling, misspelledSettings, renameNote } from "./near-names.ts";

/**
 * The process environment, parsed once at boot into a deeply frozen Config.
 * Every message is written by hand so that no secret's value can leak into an error or a log.
 */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Config {
  readonly slack: {
    readonly botToken: string;
    readonly signingSecret: string;
    /** Set means Socket Mode (a laptop); unset means HTTP mode (production). */
    readonly appToken?: string;
    /** Bolt's clientOptions.slackApiUrl; always ends with "/". Used to talk to an emulator. */
    readonly apiUrl?: string;
    readonly socketMode: boolean;
    /** How long one Web API call may take before it fails (a post then goes back to the outbox). */
    readonly timeoutMs: number;
  };
  readonly openai: {
    readonly apiKey: string;
    readonly baseUrl?: string;
    /** How long one model answer may take before it is retried (a local model on a CPU is slow). */
    readonly timeoutMs: number;
  };
  readonly database: {
    /** Unset means an embedded Postgres keeps its data in dataDir. */
    readonly url?: string;
    readonly dataDir: string;
    readonly embeddedPort: number;
  };
  readonly http: {
    /** /metrics, /healthz and /readyz in every mode; Slack's requests too in HTTP mode. */
    readonly port: number;
    /** Takes Slack's events (HTTP or Socket Mode); off (BATON_HTTP=0), a worker-only replica. */
    readonly enabled: boolean;
  };
  readonly agentsFile: string;
  readonly logLevel: LogLevel;
  /** Step jobs run at once in this process. */
  readonly workers: number;
  /** Times a failed task job is tried again, with backoff, before it is dead-lettered. */
  readonly jobRetries: number;
}

const missing = (help: string) => `is missing: ${help}`;
const invalid = (help: string) => `is invalid: ${help}`;

function requiredText(help: string) {
  return z.string({ error: missing(help) });
}

function optionalUrl(help: string, protocols: readonly string[]) {
  return z
    .string({ error: invalid(help) })
    .refine((v) => URL.canParse(v) && protocols.includes(new URL(v).protocol), invalid(help))
    .optional();
}

function intWithDefault(fallback: number, min: number, max: number, help: string) {
  return z
    .string({ error: invalid(help) })
    .regex(/^\d+$/, invalid(help))
    .transform(Number)
    .refine((n) => n >= min && n <= max, invalid(help))
    .optional()
    .transform((n) => n ?? fallback);
}

const PORT_HELP = (fallback: number) =>
  `set it to a TCP port number from 1 to 65535, or unset it to use ${fallback}.`;

const envSchema = z.object({
  SLACK_BOT_TOKEN: requiredText(
    "set it to the Bot User OAuth Token from your Slack app's OAuth & Permissions page (starts with xoxb-).",
  ).startsWith(
    "xoxb-",
    invalid(
      "it must start with xoxb-: use the Bot User OAuth Token from your Slack app's OAuth & Permissions page, not a user or app-level token.",
    ),
  ),
  SLACK_SIGNING_SECRET: requiredText(
    "set it to the Signing Secret from your Slack app's Basic Information page.",
  ),
  SLACK_APP_TOKEN: z
    .string()
    .startsWith(
      "xapp-",
      invalid(
        "it must start with xapp-: create an app-level token with the connections:write scope under Basic Information > App-Level Tokens, or unset it to use HTTP mode.",
      ),
    )
    .optional(),
  SLACK_API_URL: optionalUrl(
    "set it to an http(s) URL of a Slack Web API emulator, such as http://localhost:4000/api/, or unset it to use Slack.",
    ["http:", "https:"],
  ).transform((url) => (url === undefined || url.endsWith("/") ? url : `${url}/`)),
  SLACK_TIMEOUT_SECONDS: intWithDefault(
    30,
    1,
    300,
    "set it to the seconds one Slack Web API call may take, from 1 to 300 (default 30).",
  ),
  OPENAI_API_KEY: requiredText(
    "set it to an API key from platform.openai.com/api-keys (for a local OpenAI-compatible server, any non-empty value).",
  ),
  OPENAI_BASE_URL: optionalUrl(
    "set it to the http(s) URL of an OpenAI-compatible API, such as http://localhost:11434/v1, or unset it to use OpenAI.",
    ["http:", "https:"],
  ),
  OPENAI_TIMEOUT_SECONDS: intWithDefault(
    60,
    1,
    3_600,
    "set it to the seconds one model answer may take, from 1 to 3600 (default 60; a local model on a CPU may need 300).",
  ),
  DATABASE_URL: optionalUrl(
    "set it to a postgres:// or postgresql:// connection string, or unset it to use the embedded Postgres in BATON_DATA_DIR.",
    ["postgres:", "postgresql:"],
  ),
  BATON_DATA_DIR: z.string().default(".baton"),
  BATON_EMBEDDED_PG_PORT: intWithDefault(54329, 1, 65_535, PORT_HELP(54329)),
  PORT: intWithDefault(3000, 1, 65_535, PORT_HELP(3000)),
  BATON_AGENTS_FILE: z.string().default("agents.yml"),
  LOG_LEVEL: z
    .enum(LOG_LEVELS, {
      error: invalid(`set it to one of ${LOG_LEVELS.join(", ")} (default info).`),
    })
    .default("info"),
  BATON_WORKERS: intWithDefault(4, 1, 256, "set it to a whole number from 1 to 256 (default 4)."),
  BATON_HTTP: z
    .enum(["0", "1", "false", "true"], {
      error: invalid(
        "set it to 0 or false for a worker-only replica (no Slack events; PORT serves /metrics, /healthz and /readyz only), or 1 or true to take Slack's events; unset means 1.",
      ),
    })
    .optional()
    .transform((v) => v !== "0" && v !== "false"),
  BATON_JOB_RETRIES: intWithDefault(
    5,
    0,
    20,
    "set it to how many times a failed task job is tried again before the task fails, from 0 to 20 (default 5).",
  ),
});

/** Blank values count as unset: `.env` files often carry `KEY=` lines. Pasted secrets often end in a newline. */
function pickEnv(env: NodeJS.ProcessEnv): Record<string, string | undefined> {
  const picked: Record<string, string | undefined> = {};
  for (const key of Object.keys(envSchema.shape)) {
    const value = env[key]?.trim();
    picked[key] = value === "" ? undefined : value;
  }
  return picked;
}

/**
 * A value wrapped in quotes: `docker run --env-file` (and `kubectl create … --from-env-file`) keep
 * them as part of the value, so `"xoxb-…"` would be refused as not starting with xoxb-, and a
 * quoted key or secret sent as is.
 */
const QUOTED = /^(["'])[\s\S]*\1$/;
const QUOTED_HELP =
  "is wrapped in quotes, which are read as part of the value: remove them (an env file given to docker --env-file keeps them as written).";

function parseEnv<T extends z.ZodRawShape>(
  schema: z.ZodObject<T>,
  env: NodeJS.ProcessEnv,
): z.infer<z.ZodObject<T>> {
  const picked = pickEnv(env);
  const quoted = Object.keys(schema.shape).filter((key) => QUOTED.test(picked[key] ?? ""));
  const parsed = schema.safeParse(picked);
  if (parsed.success && quoted.length === 0) return parsed.data;
  const misspelt = new Map(misspelledEnv(env).map((m) => [m.meant, m]));
  const issues = [
    ...quoted.map((name) => ({ path: [name], message: QUOTED_HELP })),
    ...(parsed.error?.issues ?? []).filter((issue) => !quoted.includes(String(issue.path[0]))),
  ];
  const lines = issues.map((issue) => {
    const name = String(issue.path[0]);
    const typo = misspelt.get(name);
    return `  ${name} ${issue.message}${typo ? ` ${renameNote(typo)}` : ""}`;
  });
  throw new ConfigError(
    `Baton's environment is not configured correctly:\n${[...new Set(lines)].join("\n")}`,
  );
}

/** Variables set under a wrong name for one of Baton's settings (see misspelledSettings). */
export function misspelledEnv(env: NodeJS.ProcessEnv = process.env): Misspelling[] {
  return misspelledSettings(env, Object.keys(envSchema.shape));
}

/** The database settings alone, read as Baton reads them: for tools that need nothing else. */
export function loadDatabaseConfig(env: NodeJS.ProcessEnv = process.env): Config["database"] {
  const e = parseEnv(
    envSchema.pick({ DATABASE_URL: true, BATON_DATA_DIR: true, BATON_EMBEDDED_PG_PORT: true }),
    env,
  );
  return deepFreeze({
    url: e.DATABASE_URL,
    dataDir: e.BATON_DATA_DIR,
    embeddedPort: e.BATON_EMBEDDED_PG_PORT,
  });
}

/** The agents file Baton loads (BATON_AGENTS_FILE, or agents.yml), for a check of it alone. */
export function loadAgentsFilePath(env: NodeJS.ProcessEnv = process.env): string {
  return parseEnv(envSchema.pick({ BATON_AGENTS_FILE: true }), env).BATON_AGENTS_FILE;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const e = parseEnv(envSchema, env);
  return deepFreeze({
    slack: {
      botToken: e.SLACK_BOT_TOKEN,
      signingSecret: e.SLACK_SIGNING_SECRET,
      appToken: e.SLACK_APP_TOKEN,
      apiUrl: e.SLACK_API_URL,
      socketMode: e.SLACK_APP_TOKEN !== undefined,
      timeoutMs: e.SLACK_TIMEOUT_SECONDS * 1000,
    },
    openai: {
      apiKey: e.OPENAI_API_KEY,
      baseUrl: e.OPENAI_BASE_URL,
      timeoutMs: e.OPENAI_TIMEOUT_SECONDS * 1000,
    },
    database: {
      url: e.DATABASE_URL,
      dataDir: e.BATON_DATA_DIR,
      embeddedPort: e.BATON_EMBEDDED_PG_PORT,
    },
    http: { port: e.PORT, enabled: e.BATON_HTTP },
    agentsFile: e.BATON_AGENTS_FILE,
    logLevel: e.LOG_LEVEL,
    workers: e.BATON_WORKERS,
    jobRetries: e.BATON_JOB_RETRIES,
  });
}

const isSet = (value: string | undefined) => (value === undefined ? "not set" : "set");
/** Origins only: a URL's user info or query may carry credentials. */
const origin = (url: string | undefined, unset: string) =>
  url === undefined ? unset : new URL(url).origin;

/** For the startup log line: whether each secret is set, never its value. */
export function redactedConfigSummary(config: Config) {
  return {
    slack: {
      botToken: isSet(config.slack.botToken),
      signingSecret: isSet(config.slack.signingSecret),
      appToken: isSet(config.slack.appToken),
      mode: config.slack.socketMode ? "socket" : "http",
      apiUrl: origin(config.slack.apiUrl, "slack.com"),
    },
    openai: {
      apiKey: isSet(config.openai.apiKey),
      baseUrl: origin(config.openai.baseUrl, "api.openai.com"),
      timeoutSeconds: config.openai.timeoutMs / 1000,
    },
    database: config.database.url
      ? { url: "set" }
      : { url: "not set", embedded: config.database.dataDir, port: config.database.embeddedPort },
    http: { port: config.http.port, slackEvents: config.http.enabled },
    agentsFile: config.agentsFile,
    logLevel: config.logLevel,
    workers: config.workers,
    jobRetries: config.jobRetries,
  };
}

/**
 * The values of the configured secrets, for log.ts's registerSecrets: a key with no known shape
 * (a gateway's, Azure's) is masked all the same.
 */
export function secretValues(config: Config): string[] {
  return [
    config.slack.botToken,
    config.slack.signingSecret,
    config.slack.appToken,
    config.openai.apiKey,
    ...passwordsIn(config.openai.baseUrl),
    ...passwordsIn(config.database.url),
  ].filter((v): v is string => v !== undefined);
}

/** A URL's password: its user info's, as written and decoded, or its `password` parameter. */
export function passwordsIn(url: string | undefined): string[] {
  if (url === undefined || !URL.canParse(url)) return [];
  const { password, searchParams } = new URL(url);
  const passwords = new Set([
    password,
    decodedOrAsIs(password),
    searchParams.get("password") ?? "",
  ]);
  passwords.delete("");
  return [...passwords];
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
