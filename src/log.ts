import pino from "pino";
import { shorten } from "./core/text.ts";

export type Logger = pino.Logger;

/**
 * Structured logs. Secrets never reach them: known secret-bearing fields are redacted, and
 * tokens that slip into messages are masked by their registered value and by shape.
 */
export function createLogger(
  options: { level?: string; destination?: pino.DestinationStream } = {},
): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: { service: "baton" },
      redact: {
        paths: [
          "token",
          "*.token",
          "botToken",
          "*.botToken",
          "signingSecret",
          "*.signingSecret",
          "apiKey",
          "*.apiKey",
          "password",
          "*.password",
          "connectionString",
          "*.connectionString",
          "headers.authorization",
          "*.headers.authorization",
          'headers["x-slack-signature"]',
        ],
        censor: "[redacted]",
      },
      hooks: {
        logMethod(args, method) {
          method.apply(
            this,
            args.map((a) => (typeof a === "string" ? maskSecrets(a) : a)) as Parameters<
              typeof method
            >,
          );
        },
      },
      serializers: { err: (error: unknown) => serializeError(error) },
      // Every string of a line's fields, wherever a caller put one (a URL, a tool's answer).
      formatters: { log: (fields) => maskFields(fields) as Record<string, unknown> },
    },
    options.destination,
  );
}

// Tokens, keys, and a connection string's password (which may hold a raw "@", so up to the last
// one before the host; with no user name shown, what is there) or its password parameter.
const SECRET_SHAPES: [RegExp, string][] = [
  [/xox[abposr]-[A-Za-z0-9-]+/g, "[redacted]"],
  [/xapp-[A-Za-z0-9-]+/g, "[redacted]"],
  // Not inside a word: "desk-lamp-walnut-large" and "ask-the-warehouse" are not keys.
  [/(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{16,}/g, "[redacted]"],
  [/(postgres(?:ql)?:\/\/(?:[^\s:/?#@]*:)?)[^\s/?#]*@/gi, "$1[redacted]@"],
  [/([?&]password=)[^&\s#]+/gi, "$1[redacted]"],
];

/** Shorter values are not masked: a port or a word would mangle ordinary text wherever it shows. */
const MIN_SECRET_LENGTH = 8;
// Longest first: a secret that holds another is masked whole.
let knownSecrets: readonly string[] = [];

/**
 * Secret values of any shape (a gateway's key, a signing secret, an HTTP tool's `${NAME}` value),
 * masked from now on wherever maskSecrets is used: logs, failure reasons, dead letters, tool answers.
 */
export function registerSecrets(values: Iterable<string | undefined>): void {
  const added = [...values].filter(
    (v): v is string => v !== undefined && v.length >= MIN_SECRET_LENGTH,
  );
  if (added.every((v) => knownSecrets.includes(v))) return;
  knownSecrets = [...new Set([...knownSecrets, ...added])].sort((a, b) => b.length - a.length);
}

/**
 * Shapes first: a known value that is also part of a shape (a password "postgres", in every
 * connection string's scheme) would otherwise break the shape, and the password it masks leak.
 */
export function maskSecrets(text: string): string {
  let masked = text;
  for (const [shape, replacement] of SECRET_SHAPES) masked = masked.replace(shape, replacement);
  for (const secret of knownSecrets) masked = masked.replaceAll(secret, "[redacted]");
  return masked;
}

/** A log line's fields with every string masked, a few levels down; other values as they are. */
function maskFields(value: unknown, depth = 0): unknown {
  if (typeof value === "string") return maskSecrets(value);
  if (depth > 4 || value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((v) => maskFields(v, depth + 1));
  // Errors and other class instances are left to their serializers.
  if (Object.getPrototypeOf(value) !== Object.prototype) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, maskFields(v, depth + 1)]));
}

/** An error's first line, for people to read: secrets masked before it is cut to `max`. */
export function maskedFirstLine(message: string, max: number): string {
  return shorten(maskSecrets(message.split("\n")[0]?.trim() ?? ""), max);
}

function serializeError(error: unknown): Record<string, unknown> {
  if (typeof error !== "object" || error === null) return { message: maskSecrets(String(error)) };
  // pg-boss reports a worker's errors as plain objects ({ ...error, message, stack, queue }).
  const e = error as { message?: unknown; code?: unknown; stack?: unknown; queue?: unknown };
  const message = typeof e.message === "string" ? e.message : describe(error);
  return {
    type: error instanceof Error ? error.name : "object",
    message: maskSecrets(message),
    ...(e.code !== undefined && { code: e.code }),
    ...(typeof e.queue === "string" && { queue: e.queue }),
    stack: typeof e.stack === "string" ? maskSecrets(e.stack) : undefined,
  };
}

function describe(value: object): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
