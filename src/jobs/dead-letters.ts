import { maskedFirstLine } from "../log.ts";

/** The thread is told why: the last attempt's error, which pg-boss keeps as the dead letter's source output. */
export function deadLetterReason(output: object | null): string {
  const message = (output as { message?: unknown } | null)?.message;
  // The thread is read by people: a secret an error carried (a token, a password in a URL) is masked.
  const last = typeof message === "string" ? maskedFirstLine(message, 300) : "";
  return last
    ? `it kept failing after several retries; the last error was: ${last}`
    : "it kept failing after several retries";
}
