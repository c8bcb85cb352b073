import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { type AddressInfo, connect, createServer as createTcpServer, type Socket } from "node:net";
import { after, before, test } from "node:test";
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from "node:zlib";
import OpenAI from "openai";
import { leanFetch } from "../src/http/fetch.ts";

// What Slack's and OpenAI's clients are given as their fetch: it must answer as Node's fetch does.

let firstEventRead: Promise<void>;
type Seen = { method: string; path: string; headers: IncomingMessage["headers"]; body: string };
const seen: Seen[] = [];
let base = "";
/** The same server on another port: another origin. */
let otherBase = "";
const handler = async (req: IncomingMessage, res: ServerResponse) => {
  let body = "";
  for await (const chunk of req) body += chunk;
  const path = req.url ?? "/";
  seen.push({ method: req.method ?? "", path, headers: req.headers, body });
  answer(path, res);
};
const server = createServer(handler);
const otherServer = createServer(handler);

function answer(path: string, res: ServerResponse): void {
  if (path === "/json") {
    res.setHeader("set-cookie", ["a=1", "b=2"]);
    res.writeHead(201, "Made", { "content-type": "application/json", "x-request-id": "req_1" });
    res.end(JSON.stringify({ ok: true, echo: seen.at(-1)?.body }));
  } else if (path === "/empty") {
    res.writeHead(204).end();
  } else if (path === "/moved") {
    res.writeHead(302, { location: "/json" }).end();
  } else if (path === "/kept") {
    res.writeHead(307, { location: "/json" }).end();
  } else if (path.startsWith("/elsewhere?to=")) {
    res.writeHead(302, { location: decodeURIComponent(path.slice("/elsewhere?to=".length)) }).end();
  } else if (path === "/events") {
    // An event stream whose second event waits for the test to have read the first.
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write("data: one\n\n");
    firstEventRead.then(() => res.end("data: two\n\n"));
  } else if (path === "/cut") {
    res.writeHead(200, { "content-type": "application/json", "content-length": "100" });
    res.write('{"partial":');
    setTimeout(() => res.destroy(), 20);
  } else if (path.startsWith("/packed/")) {
    // A server that compresses though it was not asked to.
    const coding = path.slice("/packed/".length);
    const json = Buffer.from(JSON.stringify({ ok: true, coding }));
    const packers: Record<string, (bytes: Buffer) => Buffer> = {
      gzip: gzipSync,
      deflate: deflateSync,
      "deflate-raw": deflateRawSync,
      br: brotliCompressSync,
    };
    const packed = packers[coding]?.(json);
    res.writeHead(200, { "content-encoding": coding.replace("-raw", "") }).end(packed);
  } else if (path.startsWith("/never")) {
    // Headers never come: only a timeout or an abort ends the call.
  } else {
    res.writeHead(404).end("no such path");
  }
}

/** A server that answers every connection with `reply`, byte for byte. */
function rawServer(reply: string) {
  return createTcpServer((socket) => socket.once("data", () => socket.end(reply)));
}

before(async () => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  await new Promise<void>((resolve) => otherServer.listen(0, "127.0.0.1", resolve));
  otherBase = `http://127.0.0.1:${(otherServer.address() as AddressInfo).port}`;
});
after(() => {
  for (const s of [server, otherServer]) {
    s.closeAllConnections();
    s.close();
  }
});

test("a POST with a string body arrives whole and its answer reads as a Response", async () => {
  const response = await leanFetch()(`${base}/json`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", authorization: "Bearer x" },
    body: "channel=C1&text=h%C3%A9llo",
    redirect: "error",
  });
  assert.equal(response.status, 201);
  assert.equal(response.statusText, "Made");
  assert.equal(response.url, `${base}/json`);
  assert.equal(response.ok, true);
  assert.equal(response.headers.get("x-request-id"), "req_1");
  assert.deepEqual(response.headers.getSetCookie(), ["a=1", "b=2"]);
  assert.deepEqual(await response.json(), { ok: true, echo: "channel=C1&text=h%C3%A9llo" });
  const request = seen.at(-1);
  assert.equal(request?.method, "POST");
  assert.equal(request?.headers.authorization, "Bearer x");
  assert.equal(request?.headers["content-type"], "application/x-www-form-urlencoded");
});

test("headers given as a Headers object are sent, and a 204 has no body", async () => {
  const response = await leanFetch()(`${base}/empty`, {
    method: "DELETE",
    headers: new Headers({ "x-trace": "t1" }),
  });
  assert.equal(response.status, 204);
  assert.equal(response.body, null);
  assert.equal(seen.at(-1)?.headers["x-trace"], "t1");
});

test("an answer compressed unasked is decoded, as fetch decodes it", async () => {
  const go = leanFetch();
  for (const coding of ["gzip", "deflate", "deflate-raw", "br"]) {
    const response = await go(`${base}/packed/${coding}`, { method: "POST", body: "{}" });
    assert.deepEqual(await response.json(), { ok: true, coding }, coding);
  }
  assert.equal(seen.at(-1)?.headers["accept-encoding"], undefined);
});

test("a redirect fails under redirect: error, is followed by default, and is returned under manual", async () => {
  const go = leanFetch();
  await assert.rejects(go(`${base}/moved`, { redirect: "error" }), TypeError);
  const followed = await go(`${base}/moved`);
  assert.equal(followed.status, 201);
  assert.equal(followed.redirected, true);
  const manual = await go(`${base}/moved`, { redirect: "manual" });
  assert.equal(manual.status, 302);
  assert.equal(manual.headers.get("location"), "/json");
});

test("a POST redirected by a 302 is sent once, then its target is fetched once with GET and no body", async () => {
  const before = seen.length;
  const response = await leanFetch()(`${base}/moved`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: '{"a":1}',
  });
  assert.equal(response.status, 201);
  assert.equal(response.url, `${base}/json`);
  assert.deepEqual(
    seen.slice(before).map((r) => [r.method, r.path, r.body, r.headers["content-type"]]),
    [
      ["POST", "/moved", '{"a":1}', "application/json"],
      ["GET", "/json", "", undefined],
    ],
  );
});

test("a 307 keeps the method and body; a redirect to another origin drops the credentials", async () => {
  const before = seen.length;
  const go = leanFetch();
  await go(`${base}/kept`, { method: "POST", body: "x=1", headers: { authorization: "Bearer a" } });
  const to = encodeURIComponent(`${otherBase}/json`);
  await go(`${base}/elsewhere?to=${to}`, { headers: { authorization: "Bearer b" } });
  assert.deepEqual(
    seen.slice(before).map((r) => [r.method, r.path, r.body, r.headers.authorization]),
    [
      ["POST", "/kept", "x=1", "Bearer a"],
      ["POST", "/json", "x=1", "Bearer a"],
      ["GET", `/elsewhere?to=${to}`, "", "Bearer b"],
      ["GET", "/json", "", undefined],
    ],
  );
});

test("a HEAD answer has no body", async () => {
  const response = await leanFetch()(`${base}/json`, { method: "HEAD" });
  assert.equal(response.status, 201);
  assert.equal(response.body, null);
});

test("an event stream is passed on as it comes, not once it has ended", async () => {
  let read!: () => void;
  firstEventRead = new Promise((resolve) => {
    read = resolve;
  });
  const response = await leanFetch()(`${base}/events`, { method: "POST", body: "{}" });
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  // The server sends the second event only once the first has been read here.
  assert.equal(decoder.decode((await reader.read()).value), "data: one\n\n");
  read();
  assert.equal(decoder.decode((await reader.read()).value), "data: two\n\n");
  assert.equal((await reader.read()).done, true);
});

test("a connection cut in the middle of the answer fails as fetch fails, with a TypeError", async () => {
  await assert.rejects(leanFetch()(`${base}/cut`, { method: "POST", body: "{}" }), TypeError);
});

test("a reason phrase a Response cannot hold is dropped, not thrown", async () => {
  const raw = rawServer("HTTP/1.1 200 Çok İyi\r\ncontent-length: 2\r\n\r\nok");
  await new Promise<void>((resolve) => raw.listen(0, "127.0.0.1", resolve));
  try {
    const url = `http://127.0.0.1:${(raw.address() as AddressInfo).port}/`;
    const response = await leanFetch()(url, { method: "POST", body: "{}" });
    assert.equal(response.status, 200);
    assert.equal(await response.text(), "ok");
  } finally {
    raw.close();
  }
});

test("a form upload goes through Node's fetch as multipart, as the clients' uploads need", async () => {
  const form = new FormData();
  form.append("file", new Blob(["hello file"]), "a.txt");
  const response = await leanFetch()(`${base}/json`, { method: "POST", body: form });
  assert.equal(response.status, 201);
  assert.match(seen.at(-1)?.headers["content-type"] ?? "", /^multipart\/form-data; boundary=/);
  assert.match(seen.at(-1)?.body ?? "", /filename="a.txt"[\s\S]*hello file/);
});

test("a body that is not a string or bytes is sent through Node's fetch, encoded as fetch does", async () => {
  const response = await leanFetch()(`${base}/json`, {
    method: "POST",
    body: new URLSearchParams({ text: "a b" }),
  });
  assert.equal(response.status, 201);
  assert.equal(seen.at(-1)?.body, "text=a+b");
  assert.match(seen.at(-1)?.headers["content-type"] ?? "", /^application\/x-www-form-urlencoded/);
});

test("an abort ends a call that has no answer yet", async () => {
  const call = leanFetch()(`${base}/never`, { signal: AbortSignal.timeout(50) });
  await assert.rejects(call, (error: Error) => error.name === "TimeoutError");
});

test("the dispatcher waits past the caller's timeout, so the caller's own timer decides", async () => {
  // With a 100 ms timeout of its own, the dispatcher gives up a second later, not at undici's 300 s.
  const call = leanFetch({ timeoutMs: 100 })(`${base}/never`);
  await assert.rejects(call, (error: Error & { cause?: { code?: string } }) => {
    assert.equal(error.cause?.code, "UND_ERR_HEADERS_TIMEOUT");
    return true;
  });
});

test("the openai client times out by its own timeout through it", async () => {
  const client = new OpenAI({
    apiKey: "sk-test",
    baseURL: `${base}/never`,
    timeout: 200,
    maxRetries: 0,
    fetch: leanFetch({ timeoutMs: 200 }),
  });
  await assert.rejects(
    client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }] }),
    OpenAI.APIConnectionTimeoutError,
  );
});

test("with NODE_USE_ENV_PROXY=1 a call goes through HTTP_PROXY, as Node's fetch does", async () => {
  // A proxy that tunnels CONNECT to the test server and counts the tunnels it opened.
  const tunnels: string[] = [];
  const proxy = createServer((_req, res) => res.writeHead(405).end());
  proxy.on("connect", (req: IncomingMessage, client: Socket, head: Buffer) => {
    tunnels.push(req.url ?? "");
    const [host, port] = (req.url ?? "").split(":");
    const upstream = connect(Number(port), host, () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      upstream.write(head);
      upstream.pipe(client).pipe(upstream);
    });
    upstream.on("error", () => client.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const saved = { ...process.env };
  for (const name of ["NO_PROXY", "no_proxy", "http_proxy"]) delete process.env[name];
  Object.assign(process.env, {
    NODE_USE_ENV_PROXY: "1",
    HTTP_PROXY: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
  });
  try {
    const response = await leanFetch()(`${base}/json`, { method: "POST", body: "via=proxy" });
    assert.equal(response.status, 201);
    assert.equal(seen.at(-1)?.body, "via=proxy");
    assert.deepEqual(tunnels, [new URL(base).host]);
  } finally {
    process.env = saved;
    proxy.closeAllConnections();
    proxy.close();
  }
});
