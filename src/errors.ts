import type { ThreadCatchUp } from "./runtime/deps.ts";
/**
 * One error base, split by who is at fault, each with a stable code.
 * `src/slack/words.ts` turns them into words for Slack users; logs keep the code.
 */
export type Fault = "user" | "operator" | "model" | "system";

export abstract class BatonError extends Error {
  abstract readonly code: string;
  abstract readonly fault: Fault;
  /** Whether retrying the same work could succeed (drives job retries). */
  readonly retriable: boolean = false;
}

/** The operator's configuration (env or agents file) is missing or malformed. */
export class ConfigError extends BatonError {
  readonly code = "config_invalid";
  readonly fault = "operator";
}

/** A person asked for something they may not do (approve their own request, ...). */
export class PolicyDeniedError extends BatonError {
  readonly code = "policy_denied";
  readonly fault = "user";
}

/** The model produced output we cannot use (malformed JSON, unknown tool, bad arguments). */
export class ModelBehaviorError extends BatonError {
  readonly code = "model_behavior";
  readonly fault = "model";
}

/** A tool outside the agent's allowlist was requested. */
export class ToolNotAllowedError extends BatonError {
  readonly code = "tool_not_allowed";
  readonly fault = "model";
}

export class NotFoundError extends BatonError {
  readonly code = "not_found";
  readonly fault = "user";
}

/** A task went past its hop limit or cost cap. */
export class LimitExceededError extends BatonError {
  readonly code = "limit_exceeded";
  readonly fault = "system";
}

/** A dependency (Slack, the model, the database) failed in a way that may pass. */
export class TransientError extends BatonError {
  readonly code = "transient";
  readonly fault = "system";
  override readonly retriable = true;
}

/** A dependency asked not to be called again for `retryAfterMs` (HTTP 429 and its Retry-After). */
export class RetryAfterError extends TransientError {
  readonly retryAfterMs: number;
  constructor(message: string, retryAfterMs: number, options?: ErrorOptions) {
    super(message, options);
    this.retryAfterMs = retryAfterMs;
  }
}

/** Slack asked to wait while a thread was read: `rest` is what is left to read, after the wait. */
export class ThreadReadPaused extends RetryAfterError {
  readonly rest: ThreadCatchUp;
  constructor(paused: RetryAfterError, rest: ThreadCatchUp) {
    super(paused.message, paused.retryAfterMs, { cause: paused });
    this.rest = rest;
  }
}

export function isBatonError(error: unknown): error is BatonError {
  return error instanceof BatonError;
}
