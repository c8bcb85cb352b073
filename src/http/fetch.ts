import * as zlib from "node:zlib";
import { Agent, type Dispatcher, EnvHttpProxyAgent, request, fetch as undiciFetch } from "undici";

/**
 * The `fetch` that Slack's WebClient and the openai client are given (both take one as an option).
 * Node's own fetch runs every request through WHATWG streams: about 0.25 ms of CPU a call here, as
 * much as the rest of a turn's Slack work. A call with a buffered body (a string or bytes, which is
 * what both clients send) goes through undici's `request` and comes back as a real Response, with
 * its body read; anything else (a stream, a form, a redirect to follow) through undici's fetch.
 *
 * `timeoutMs` is the caller's own timeout. The dispatcher waits a little longer, so the caller's
 * timer decides: undici's default of 300 s for response headers would otherwise cut a slow model
 * short of an OPENAI_TIMEOUT_SECONDS above 300. As with Node's fetch, HTTP(S)_PROXY and NO_PROXY
 * are honoured when NODE_USE_ENV_PROXY=1.
 */
export function leanFetch(options: { timeoutMs?: number } = {}): typeof fetch {
  const dispatcher = dispatcherFor(options.timeoutMs);
  const fallback = (input: string | URL, init: RequestInit = {}) =>
    undiciFetch(input, { ...(init as object), dispatcher }) as unknown as Promise<Response>;

  return (async (input: string | URL | Request, init: RequestInit = {}) => {
    const body = init.body ?? undefined;
    if (input instanceof Request || !(body === undefined || isBuffered(body)))
      return input instanceof Request ? fetch(input, init) : fallback(input, init);
    const answer = await request(input, {
      method: (init.method ?? "GET") as Dispatcher.HttpMethod,
      headers: headersOf(init.headers),
      body: body ?? null,
      signal: init.signal ?? undefined,
      dispatcher,
    }).catch((error: unknown) => {
      // As fetch does: an abort rejects with the signal's reason, a network failure with a TypeError.
      if (init.signal?.aborted) throw error;
      throw new TypeError("fetch failed", { cause: error });
    });
    const redirect = answer.statusCode >= 300 && answer.statusCode < 400 && answer.headers.location;
    if (redirect && init.redirect !== "manual") {
      await answer.body.dump();
      if (init.redirect === "error")
        throw new TypeError("fetch failed", { cause: new Error("unexpected redirect") });
      return fallback(input, init);
    }
    const bytes = NO_BODY.has(answer.statusCode)
      ? null
      : decoded(await answer.body.arrayBuffer(), answer.headers["content-encoding"]);
    const response = new Response(bytes, {
      status: answer.statusCode,
      statusText: answer.statusText,
      headers: responseHeaders(answer.headers),
    });
    // A constructed Response has no URL; the clients read it (in logs, and Slack's to tell a file
    // download from an API answer).
    return Object.defineProperty(response, "url", { value: String(input) });
  }) as typeof fetch;
}

/** How much longer than the caller's timeout the dispatcher waits. */
const TIMEOUT_MARGIN_MS = 1_000;

/** Statuses a Response may not carry a body with. */
const NO_BODY = new Set([101, 204, 205, 304]);

function dispatcherFor(timeoutMs: number | undefined): Dispatcher {
  // Idle connections are kept as long as Node's fetch keeps them (undici's default, or the
  // server's Keep-Alive hint): longer, and a server that closes first races the next request.
  const options =
    timeoutMs === undefined
      ? {}
      : {
          headersTimeout: timeoutMs + TIMEOUT_MARGIN_MS,
          bodyTimeout: timeoutMs + TIMEOUT_MARGIN_MS,
        };
  return process.env.NODE_USE_ENV_PROXY === "1"
    ? new EnvHttpProxyAgent(options)
    : new Agent(options);
}

/**
 * No Accept-Encoding is sent, so a server should answer as is; one that compresses anyway is
 * decoded, as fetch would (and, as fetch does, an encoding it does not know is left as it came).
 */
function decoded(bytes: ArrayBuffer, encoding: string | string[] | undefined): Uint8Array {
  try {
    return decode(new Uint8Array(bytes), encoding);
  } catch (error) {
    throw new TypeError("fetch failed", { cause: error });
  }
}

function decode(bytes: Uint8Array, encoding: string | string[] | undefined): Uint8Array {
  let body = bytes;
  const codings = [encoding ?? []].flat().join(",").toLowerCase().split(",");
  for (const coding of codings.map((c) => c.trim()).reverse()) {
    if (coding === "gzip" || coding === "x-gzip") body = zlib.gunzipSync(body);
    // "deflate" is meant to be zlib-wrapped, and is sometimes raw: a zlib header's low nibble is 8.
    else if (coding === "deflate")
      body = ((body[0] ?? 0) & 0x0f) === 8 ? zlib.inflateSync(body) : zlib.inflateRawSync(body);
    else if (coding === "br") body = zlib.brotliDecompressSync(body);
    // Node 22.15 and newer.
    else if (coding === "zstd" && zlib.zstdDecompressSync) body = zlib.zstdDecompressSync(body);
  }
  return body;
}

function isBuffered(body: NonNullable<RequestInit["body"]>): body is string | Uint8Array {
  return typeof body === "string" || body instanceof Uint8Array;
}

function headersOf(headers: RequestInit["headers"]): Record<string, string> {
  if (!headers) return {};
  if (headers instanceof Headers || Array.isArray(headers))
    return Object.fromEntries(headers as Iterable<[string, string]>);
  return headers as Record<string, string>;
}

function responseHeaders(headers: Record<string, string | string[] | undefined>): Headers {
  const out = new Headers();
  for (const [name, value] of Object.entries(headers)) {
    if (Array.isArray(value)) for (const v of value) out.append(name, v);
    else if (value !== undefined) out.append(name, value);
  }
  return out;
}
