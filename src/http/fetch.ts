import { Readable } from "node:stream";
import * as zlib from "node:zlib";
import { Agent, type Dispatcher, EnvHttpProxyAgent, request } from "undici";

/**
 * The `fetch` that Slack's WebClient and the openai client are given (both take one as an option).
 * Node's own fetch runs every request through WHATWG streams: about 0.25 ms of CPU a call here, as
 * much as the rest of a turn's Slack work. A call with a buffered body (a string or bytes, which is
 * what both clients send) goes through undici's `request` and comes back as a real Response, its
 * body read (an event stream is passed on as it comes); anything else (a form, a stream, a Request)
 * through Node's fetch, on the same dispatcher.
 *
 * `timeoutMs` is the caller's own timeout. The dispatcher waits a little longer, so the caller's
 * timer decides: undici's default of 300 s for response headers would otherwise cut a slow model
 * short of an OPENAI_TIMEOUT_SECONDS above 300. As with Node's fetch, HTTP(S)_PROXY and NO_PROXY
 * are honoured when NODE_USE_ENV_PROXY=1.
 */
export function leanFetch(options: { timeoutMs?: number } = {}): typeof fetch {
  const dispatcher = dispatcherFor(options.timeoutMs);
  // Node's fetch knows the FormData and Blob classes the clients build their uploads with.
  const nodeFetch = (input: string | URL | Request, init: RequestInit) =>
    fetch(input, { ...init, dispatcher } as RequestInit);

  return (async (input: string | URL | Request, init: RequestInit = {}) => {
    const body = init.body ?? undefined;
    if (input instanceof Request || !(body === undefined || isBuffered(body)))
      return nodeFetch(input, init);
    let call: Call = {
      url: new URL(String(input)),
      method: (init.method ?? "GET").toUpperCase(),
      headers: headersOf(init.headers),
      body,
    };
    for (let redirects = 0; ; redirects++) {
      const answer = await request(call.url, {
        method: call.method as Dispatcher.HttpMethod,
        headers: call.headers,
        body: call.body ?? null,
        signal: init.signal ?? undefined,
        dispatcher,
      }).catch(failed(init));
      const location = REDIRECTS.has(answer.statusCode) && answer.headers.location;
      if (!location || init.redirect === "manual")
        return await respond(call, answer, redirects > 0).catch(failed(init));
      await answer.body.dump();
      if (init.redirect === "error" || redirects === MAX_REDIRECTS)
        throw new TypeError("fetch failed", { cause: new Error(`redirected to ${location}`) });
      call = redirected(call, answer.statusCode, String(location));
    }
  }) as typeof fetch;
}

interface Call {
  url: URL;
  method: string;
  headers: Record<string, string>;
  body: string | Uint8Array | undefined;
}

/** How much longer than the caller's timeout the dispatcher waits. */
const TIMEOUT_MARGIN_MS = 1_000;
/** As fetch: a redirect is followed twenty times at most. */
const MAX_REDIRECTS = 20;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** Statuses a Response may not carry a body with. */
const NO_BODY = new Set([101, 204, 205, 304]);
/** The headers that describe a body: dropped with the body when a redirect turns a POST into a GET. */
const BODY_HEADERS = ["content-type", "content-length", "content-encoding", "content-language"];

/** Also the HTTP tools' (http-tools.ts): the same proxy settings, their own timeouts. */
export function dispatcherFor(timeoutMs: number | undefined): Dispatcher {
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
 * Said after "could not be reached": a proxy Node was not told to use (Node's fetch, and Baton's,
 * read HTTPS_PROXY only with NODE_USE_ENV_PROXY=1), or how to use one. `env` is the process's.
 */
export function proxyHint(env: NodeJS.ProcessEnv = process.env): string {
  const proxy = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"].find(
    (name) => env[name],
  );
  if (env.NODE_USE_ENV_PROXY === "1") return "";
  return proxy
    ? ` (${proxy} is set, but is used only with NODE_USE_ENV_PROXY=1)`
    : " (behind an HTTP proxy, set NODE_USE_ENV_PROXY=1 and HTTPS_PROXY)";
}

/** As fetch does: an abort rejects with the signal's reason, any other failure with a TypeError. */
function failed(init: RequestInit) {
  return (error: unknown): never => {
    if (init.signal?.aborted) throw error;
    throw new TypeError("fetch failed", { cause: error });
  };
}

/**
 * The next call of a redirect, by fetch's rules: a 303, or a 301 or 302 after a POST, becomes a GET
 * without its body; a redirect to another origin does not carry the credentials along.
 */
function redirected(call: Call, status: number, location: string): Call {
  const url = new URL(location, call.url);
  const toGet =
    (status === 303 && call.method !== "GET" && call.method !== "HEAD") ||
    ((status === 301 || status === 302) && call.method === "POST");
  const headers = { ...call.headers };
  const drop = [
    ...(toGet ? BODY_HEADERS : []),
    ...(url.origin === call.url.origin ? [] : ["authorization", "cookie"]),
  ];
  for (const name of Object.keys(headers))
    if (drop.includes(name.toLowerCase())) delete headers[name];
  return toGet
    ? { url, method: "GET", headers, body: undefined }
    : { url, method: call.method, headers, body: call.body };
}

async function respond(
  call: Call,
  answer: Dispatcher.ResponseData,
  wasRedirected: boolean,
): Promise<Response> {
  const headers = responseHeaders(answer.headers);
  const encoding = headers.get("content-encoding") ?? "";
  let body: Uint8Array | ReadableStream | null;
  if (NO_BODY.has(answer.statusCode) || call.method === "HEAD") {
    await answer.body.dump();
    body = null;
  } else if (headers.get("content-type")?.startsWith("text/event-stream")) {
    // Events are read as they come (a streamed completion), not once the stream has ended.
    body = Readable.toWeb(decodingStream(answer.body, encoding)) as ReadableStream;
  } else body = decoded(new Uint8Array(await answer.body.arrayBuffer()), encoding);
  const init = { status: answer.statusCode, statusText: answer.statusText, headers };
  let response: Response;
  try {
    response = new Response(body, init);
  } catch {
    // A reason phrase fetch's Response will not hold (not Latin-1): the status says it all.
    response = new Response(body, { ...init, statusText: "" });
  }
  // A constructed Response has no URL; the clients read it (in logs, and Slack's to tell a file
  // download from an API answer).
  Object.defineProperty(response, "url", { value: call.url.href });
  if (wasRedirected) Object.defineProperty(response, "redirected", { value: true });
  return response;
}

/** The content codings of a body, last applied first. */
function codings(encoding: string): string[] {
  return encoding
    .toLowerCase()
    .split(",")
    .map((c) => c.trim())
    .filter((c) => c && c !== "identity")
    .reverse();
}

/**
 * No Accept-Encoding is sent, so a server should answer as is; one that compresses anyway is
 * decoded, as fetch would (and, as fetch does, an encoding it does not know is left as it came).
 */
function decoded(bytes: Uint8Array, encoding: string): Uint8Array {
  let body = bytes;
  for (const coding of codings(encoding)) {
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

/** The same decoding for a body read as it comes. */
function decodingStream(body: Readable, encoding: string): Readable {
  let stream = body;
  for (const coding of codings(encoding)) {
    const decoder =
      coding === "gzip" || coding === "x-gzip"
        ? zlib.createGunzip()
        : coding === "deflate"
          ? zlib.createInflate()
          : coding === "br"
            ? zlib.createBrotliDecompress()
            : undefined;
    if (!decoder) continue;
    stream.on("error", (error) => decoder.destroy(error));
    stream = stream.pipe(decoder);
  }
  return stream;
}

function isBuffered(body: NonNullable<RequestInit["body"]>): body is string | Uint8Array {
  return typeof body === "string" || body instanceof Uint8Array;
}

function headersOf(headers: RequestInit["headers"]): Record<string, string> {
  if (!headers) return {};
  if (headers instanceof Headers || Array.isArray(headers))
    return Object.fromEntries(headers as Iterable<[string, string]>);
  return { ...(headers as Record<string, string>) };
}

function responseHeaders(headers: Record<string, string | string[] | undefined>): Headers {
  const out = new Headers();
  for (const [name, value] of Object.entries(headers)) {
    if (Array.isArray(value)) for (const v of value) out.append(name, v);
    else if (value !== undefined) out.append(name, value);
  }
  return out;
}
