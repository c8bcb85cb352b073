import { BatonError, RetryAfterError, TransientError } from "../errors.ts";

/** Slack refused the call for a reason retrying will not fix (bad channel, bad blocks, auth). */
export class SlackDeliveryError extends BatonError {
  readonly code = "slack_rejected";
  readonly fault = "system";
  /** Slack's own error code (`not_in_channel`, ...), when it gave one. */
  slackError?: string;
}

// The app cannot read this conversation: not a member (chat:write.public posts without joining).
const NOT_A_MEMBER = new Set(["not_in_channel", "channel_not_found"]);
export const isNotAMember = (error: unknown) =>
  error instanceof SlackDeliveryError && NOT_A_MEMBER.has(error.slackError ?? "");

/** Runs one Web API call and turns a Slack failure into a Baton error. */
export async function call<T>(method: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw toBatonError(method, error);
  }
}

// Slack refused the blocks themselves: too much text in all (undocumented), or a malformed block.
const BLOCKS_REFUSED = new Set(["msg_blocks_too_long", "invalid_blocks"]);
export const blocksRefused = (error: unknown) =>
  error instanceof SlackDeliveryError && BLOCKS_REFUSED.has(error.slackError ?? "");

// Slack's own trouble: the same call can succeed later.
const TRANSIENT_PLATFORM_ERRORS = new Set([
  "internal_error",
  "fatal_error",
  "service_unavailable",
  "request_timeout",
  "ratelimited",
  "rate_limited",
]);

/**
 * Maps an error thrown by @slack/web-api to a Baton error; anything else (a bug) is returned as is.
 * Messages name the method and Slack's error code only, never the request (it carries the token).
 */
export function toBatonError(method: string, error: unknown): unknown {
  if (error instanceof BatonError || typeof error !== "object" || error === null) return error;
  const { code, data, retryAfter, statusCode } = error as {
    code?: unknown;
    data?: { error?: unknown; needed?: unknown };
    retryAfter?: unknown;
    statusCode?: unknown;
  };
  switch (code) {
    case "slack_webapi_rate_limited_error":
      return new RetryAfterError(
        `Slack rate-limited ${method} (retry after ${retryAfter} s)`,
        // Seconds, as Slack's Retry-After header gives them.
        typeof retryAfter === "number" ? retryAfter * 1000 : 0,
        { cause: error },
      );
    case "slack_webapi_request_error":
      return new TransientError(`Slack did not answer ${method}`, { cause: error });
    case "slack_webapi_http_error":
      return new TransientError(`Slack answered ${method} with HTTP ${statusCode}`, {
        cause: error,
      });
    case "slack_webapi_platform_error": {
      const slackError = typeof data?.error === "string" ? data.error : "unknown_error";
      // An app made before the manifest asked for a scope, or not reinstalled since: say which.
      const scope =
        slackError === "missing_scope" && typeof data?.needed === "string"
          ? ` (the app lacks the ${data.needed} scope: paste manifest.yml into the app's App Manifest page and reinstall the app)`
          : "";
      const message = `Slack refused ${method}: ${slackError}${scope}`;
      return TRANSIENT_PLATFORM_ERRORS.has(slackError)
        ? new TransientError(message, { cause: error })
        : Object.assign(new SlackDeliveryError(message, { cause: error }), { slackError });
    }
    default:
      return error;
  }
}
