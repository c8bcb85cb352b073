// How Web API requests arrive and answers leave: arguments in any encoding a client uses, JSON out.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { SlackArgs } from "./state.ts";

/** A Slack error answer: `{ ok: false, error: code }`. */
export class SlackErr extends Error {
  readonly code: string;
  constructor(code: string) {
    super(code);
    this.code = code;
  }
}

// Web API clients form-encode nested values as JSON strings; these are the ones we read back.
const JSON_ARGS = new Set(["blocks", "attachments", "view", "metadata", "user_auth_blocks"]);

export function send(
  res: ServerResponse,
  status: number,
  headers: Record<string, string>,
  body: unknown,
) {
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", ...headers });
  res.end(JSON.stringify(body));
}

export async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The query's arguments, overridden by the body's: JSON, form-encoded or multipart. */
export async function parseArgs(
  raw: Buffer,
  contentType = "",
  query: URLSearchParams,
): Promise<SlackArgs> {
  const args: SlackArgs = Object.fromEntries(query);
  if (contentType.includes("application/json") && raw.length > 0) {
    Object.assign(args, JSON.parse(raw.toString("utf8")));
  } else if (contentType.includes("application/x-www-form-urlencoded")) {
    Object.assign(args, Object.fromEntries(new URLSearchParams(raw.toString("utf8"))));
  } else if (contentType.includes("multipart/form-data")) {
    const form = await new Response(raw, { headers: { "content-type": contentType } }).formData();
    for (const [key, value] of form)
      args[key] = typeof value === "string" ? value : `<file ${value.name}>`;
  }
  for (const key of JSON_ARGS) {
    const value = args[key];
    if (typeof value === "string" && /^\s*[[{]/.test(value)) args[key] = JSON.parse(value);
  }
  return args;
}

export function requireArgs(args: SlackArgs, ...names: string[]) {
  for (const n of names)
    if (args[n] === undefined || args[n] === "") throw new SlackErr("invalid_arguments");
}

/** Form-encoded booleans arrive as "true" or "1". */
export function isTrue(value: unknown): boolean {
  return value === true || value === "true" || value === "1" || value === 1;
}

export function str(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

export function asRecord(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {};
}

export function pick(args: SlackArgs, keys: string[]): SlackArgs {
  return Object.fromEntries(keys.filter((k) => args[k] !== undefined).map((k) => [k, args[k]]));
}
