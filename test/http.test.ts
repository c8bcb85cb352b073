import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { type AddressInfo, connect, createServer as createTcpServer, type Socket } from "node:net";
import { after, before, describe, it, test } from "node:test";
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from "node:zlib";
import OpenAI from "openai";
import { httpToolSchema } from "../src/config/agents-schema.ts";
import { ToolInputError, toolWords } from "../src/core/tools/tool.ts";
import { ConfigError, TransientError } from "../src/errors.ts";
import { leanFetch, proxyHint } from "../src/http/fetch.ts";
import { httpTools } from "../src/http/http-tools.ts";
import { maskSecrets } from "../src/log.ts";

// HTTP out of Baton: the agents file's HTTP tools, and the fetch Slack's and OpenAI's clients are
// given. One suite per former test file; http-fetch last, as it swaps process.env for a test.

describe("http-tool-env-values", async () => {
  // A `${NAME}` value read from a file or a secret store often ends in a newline: the tool sends it
  // trimmed, as Baton's own variables are read, rather than failing as "could not be reached".

  let received: IncomingMessage | undefined;
  const server = createServer((req, res) => {
    received = req;
    req.resume();
    req.on("end", () => res.end('{"ok":true}'));
  });
  let port = 0;
  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  test("an environment value with a trailing newline is sent trimmed, in the URL and the headers", async () => {
    const config = httpToolSchema.parse({
      name: "find_customer",
      description: "Find a customer.",
      class: "read",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the agents file's ${NAME} syntax
      url: "http://127.0.0.1:${CRM_PORT}/find?key=${API_KEY}",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the agents file's ${NAME} syntax
      headers: { Authorization: "Bearer ${API_KEY}" },
      parameters: { type: "object" },
    });
    const [tool] = httpTools([config], { CRM_PORT: ` ${port}\n`, API_KEY: "k-123\n" });
    assert.ok(tool);
    const ctx = { tx: undefined, idempotencyKey: "t:1:0", taskId: "t", agentId: "support" };
    assert.deepEqual(await tool.run(ctx, {}), { ok: true });
    assert.equal(received?.headers.authorization, "Bearer k-123");
    assert.equal(received?.url, "/find?key=k-123");
  });
});

describe("http-tools", async () => {
  // The HTTP tool contract, answer by answer: what reaches the model, what fails the task, what is
  // tried again.

  let respond: (res: ServerResponse, req: IncomingMessage) => void = (res) => res.end();
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => respond(res, req));
  });
  let url = "";
  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  function tool(
    extra: Record<string, unknown> = {},
    env: Record<string, string> = { API_KEY: "k-123" },
  ) {
    const config = httpToolSchema.parse({
      name: "find_customer",
      description: "Find a customer.",
      class: "read",
      url: `${url}/find?key=\${API_KEY}`,
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the agents file's ${NAME} syntax
      headers: { Authorization: "Bearer ${API_KEY}" },
      timeout: "1s",
      parameters: { type: "object", properties: { email: { type: "string" } } },
      ...extra,
    });
    const [built] = httpTools([config], env);
    assert.ok(built);
    return (args: unknown = { email: "a@b.c" }) =>
      built.run({ tx: undefined, idempotencyKey: "t:1:0", taskId: "t", agentId: "support" }, args);
  }

  const answer =
    (status: number, body?: string, headers: Record<string, string> = {}) =>
    (res: ServerResponse) => {
      res.writeHead(status, headers);
      res.end(body);
    };

  describe("HTTP tools", () => {
    it("gives the model a 2xx answer: JSON, text, or ok for an empty body", async () => {
      respond = answer(200, '{"name":"Dana"}');
      assert.deepEqual(await tool()(), { name: "Dana" });
      respond = answer(200, "Dana Reyes, pro plan");
      assert.equal(await tool()(), "Dana Reyes, pro plan");
      respond = answer(204);
      assert.deepEqual(await tool()(), { ok: true });
    });

    it("turns a 4xx into a refusal the model reads", async () => {
      respond = answer(422, '{"error":"that email is malformed"}');
      await assert.rejects(
        tool()(),
        (e) => e instanceof ToolInputError && /malformed/.test(e.message),
      );
      respond = answer(404, "no such customer");
      await assert.rejects(
        tool()(),
        (e) => e instanceof ToolInputError && e.message === "no such customer",
      );
    });

    it("fails the task on refused credentials, naming the URL without its secrets", async () => {
      respond = answer(401, "{}");
      await assert.rejects(tool()(), (e) => {
        assert.ok(e instanceof ConfigError);
        assert.match(
          e.message,
          /refused Baton's credentials \(HTTP 401\): check the tool's headers/,
        );
        assert.doesNotMatch(e.message, /k-123/);
        return true;
      });
    });

    it("does not follow a redirect: it says where the URL now is, and the task stops", async () => {
      respond = answer(308, "", { location: "https://crm.example/find?token=x" });
      await assert.rejects(tool()(), (e) => {
        assert.ok(e instanceof ConfigError);
        assert.match(
          e.message,
          /redirects \(HTTP 308 to https:\/\/crm\.example\/find\): set the URL/,
        );
        return true;
      });
    });

    // Many APIs echo the request: a debug echo, an error quoting the header, a redirect repeating the path.
    it("never gives back a value it filled in from the environment: not in an answer, a refusal or a redirect", async () => {
      const KEY = "crm-key-5f1e2d";
      const echo = tool({}, { API_KEY: KEY });
      respond = (res, req) =>
        res.end(
          JSON.stringify({
            echo: { authorization: req.headers.authorization, url: req.url },
            [KEY]: [`seen ${KEY}`, 7],
          }),
        );
      assert.deepEqual(await echo(), {
        echo: { authorization: "Bearer [redacted]", url: "/find?key=[redacted]" },
        "[redacted]": ["seen [redacted]", 7],
      });
      respond = (res, req) => res.end(`you sent ${req.headers.authorization}`);
      assert.equal(await echo(), "you sent Bearer [redacted]");
      respond = (res, req) => {
        res.writeHead(400);
        res.end(JSON.stringify({ error: `bad header: ${req.headers.authorization}` }));
      };
      await assert.rejects(echo(), (e) => {
        assert.ok(e instanceof ToolInputError);
        assert.equal(e.message, "bad header: Bearer [redacted]");
        return true;
      });
      // A webhook whose secret is its path, moved to https by a load balancer.
      const hook = tool({ url: `${url}/hook/\${HOOK}`, headers: {} }, { HOOK: "hook/path secret" });
      respond = (res, req) => {
        res.writeHead(301, { location: `https://user:pw@crm.example${req.url}?sig=abc` });
        res.end();
      };
      await assert.rejects(hook(), (e) => {
        assert.ok(e instanceof ConfigError);
        assert.match(e.message, /HTTP 301 to https:\/\/crm\.example\/hook\/\[redacted\]\)/);
        assert.doesNotMatch(e.message, /path|secret|pw|sig/);
        return true;
      });
    });

    it("stops the task when a variable its URL reads is gone from the environment", async () => {
      const config = httpToolSchema.parse({
        name: "find_customer",
        description: "Find a customer.",
        class: "read",
        url: `${url}/find?key=\${API_KEY}`,
        parameters: { type: "object" },
      });
      const [built] = httpTools([config], {});
      await assert.rejects(
        built?.run({ tx: undefined, idempotencyKey: "k", taskId: "t", agentId: "a" }, {}) ??
          Promise.resolve(),
        (e) => e instanceof ConfigError && /API_KEY is not set/.test(e.message),
      );
    });

    it("tries again after 429, 5xx, a timeout or no answer", async () => {
      for (const status of [429, 500, 503]) {
        respond = answer(status, "{}");
        await assert.rejects(tool()(), TransientError);
      }
      respond = () => {}; // never answers
      await assert.rejects(
        tool()(),
        (e) => e instanceof TransientError && /no answer within 1 s/.test(e.message),
      );
      await assert.rejects(
        tool({ url: "http://127.0.0.1:1/find" })(),
        (e) => e instanceof TransientError && /could not be reached/.test(e.message),
      );
    });

    it("does not read an answer over a megabyte", async () => {
      respond = answer(200, "x".repeat(1_000_001));
      await assert.rejects(
        tool()(),
        (e) => e instanceof ToolInputError && /over 1000000 bytes/.test(e.message),
      );
    });

    it("gives an endpoint from 1 s to 5 min to answer", () => {
      const base = {
        name: "t",
        description: "d",
        class: "read",
        url: "http://127.0.0.1:1/t",
        parameters: { type: "object" },
      };
      assert.equal(httpToolSchema.parse(base).timeout, 30_000);
      for (const timeout of ["0s", "10m"])
        assert.match(
          httpToolSchema.safeParse({ ...base, timeout }).error?.issues[0]?.message ?? "",
          /from 1s to 5m/,
        );
    });

    it("checks arguments against the operator's JSON Schema before calling", () => {
      const [built] = httpTools(
        [
          httpToolSchema.parse({
            name: "t",
            description: "d",
            class: "write",
            url: "http://127.0.0.1:1/t",
            parameters: {
              type: "object",
              properties: { amount: { type: "number", minimum: 1 } },
              required: ["amount"],
            },
          }),
        ],
        {},
      );
      assert.equal(built?.input.safeParse({ amount: 5 }).success, true);
      assert.equal(built?.input.safeParse({ amount: 0 }).success, false);
      assert.equal(built?.input.safeParse({}).success, false);
    });

    it("says what it does in its label's words, else in its name's", () => {
      const base = {
        description: "d",
        class: "write",
        url: "http://127.0.0.1:1/t",
        parameters: { type: "object" },
      };
      const [labelled, named] = httpTools(
        [
          httpToolSchema.parse({ ...base, name: "refund_order", label: "issue a refund" }),
          httpToolSchema.parse({ ...base, name: "refund_order" }),
        ],
        {},
      );
      assert.ok(labelled && named);
      assert.equal(toolWords(labelled), "issue a refund");
      assert.equal(toolWords(named), "refund order");
    });
  });

  // Which `${NAME}` values are secrets. Every value is masked wherever it comes back, except one that
  // can only be ordinary text: an API version header's value would mask every date equal to it, and
  // a host would mask the links and redirects an operator must read.
  describe("HTTP tool answers: what is masked", () => {
    it("an API version header's value is not a secret: a date equal to it stays", async () => {
      const find = tool(
        // biome-ignore lint/suspicious/noTemplateCurlyInString: the agents file's syntax
        { url: `${url}/find`, headers: { "Stripe-Version": "${API_VERSION}" } },
        { API_VERSION: "2024-06-20" },
      );
      respond = (res) => res.end(JSON.stringify({ shipped_on: "2024-06-20" }));
      assert.deepEqual(await find(), { shipped_on: "2024-06-20" });
      assert.equal(maskSecrets("order shipped 2024-06-20"), "order shipped 2024-06-20");
    });

    it("a header value is a secret, whatever the header, when its variable's name says so", async () => {
      const find = tool(
        // biome-ignore lint/suspicious/noTemplateCurlyInString: the agents file's syntax
        { url: `${url}/find`, headers: { "X-Version": "${ACME_VERSION_TOKEN}" } },
        { ACME_VERSION_TOKEN: "v-token-77a1c9" },
      );
      respond = (res, req) => res.end(JSON.stringify({ echo: req.headers["x-version"] }));
      assert.deepEqual(await find(), { echo: "[redacted]" });
    });

    it("a header whose name only holds the word version is not a version header", async () => {
      const find = tool(
        // biome-ignore lint/suspicious/noTemplateCurlyInString: the agents file's syntax
        { url: `${url}/find`, headers: { "X-Conversion-Id": "${ACME_CONVERSION}" } },
        { ACME_CONVERSION: "conv-8f3a91c2e7" },
      );
      respond = (res, req) => res.end(JSON.stringify({ echo: req.headers["x-conversion-id"] }));
      assert.deepEqual(await find(), { echo: "[redacted]" });
    });

    it("a value only the URL's host is not: links and the redirect target stay readable", async () => {
      const host = url.slice("http://".length);
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the agents file's syntax
      const find = tool({ url: "http://${CRM_HOST}/find", headers: {} }, { CRM_HOST: host });
      respond = (res) => res.end(JSON.stringify({ link: `${url}/customers/42` }));
      assert.deepEqual(await find(), { link: `${url}/customers/42` });
      respond = (res) => {
        res.writeHead(308, { location: `${url}/v2/find` });
        res.end();
      };
      await assert.rejects(find(), (e) => {
        assert.ok(e instanceof ConfigError);
        assert.ok(e.message.includes(`${url}/v2/find`), e.message);
        return true;
      });
    });

    it("a value in the URL's path is a secret, whatever its name (a webhook's path is its key)", async () => {
      const find = tool(
        { url: `${url}/services/\${ORDERS_WEBHOOK}`, headers: {} },
        { ORDERS_WEBHOOK: "T0/B0/secretpath42" },
      );
      respond = (res, req) => res.end(JSON.stringify({ posted_to: `${url}${req.url}` }));
      assert.deepEqual(await find(), { posted_to: `${url}/services/[redacted]` });
    });

    // Shaped like a host (letters and digits), but in the query or the path: an API's app id, a
    // hook's key. Express's default 404 quotes the URL it was sent, query and all.
    for (const [part, at] of [
      ["query", `/weather?appid=\${WEATHER_APPID}`],
      ["path", `/hooks/\${WEATHER_APPID}/run`],
    ] as const)
      it(`a plain word in the URL's ${part} is a secret, whatever its name`, async () => {
        const find = tool(
          { url: `${url}${at}`, headers: {} },
          { WEATHER_APPID: "a1b2c3d4e5f60718" },
        );
        respond = (res, req) => answer(404, `<pre>Cannot POST ${req.url}</pre>`)(res);
        await assert.rejects(find(), (e) => {
          assert.ok(e instanceof ToolInputError);
          assert.ok(e.message.includes("Cannot POST") && !e.message.includes("a1b2c3d4e5f60718"));
          return true;
        });
      });

    it("a NUL or half an emoji in an answer is cleaned before Postgres sees it", async () => {
      const find = tool({ url: `${url}/find`, headers: {} }, {});
      respond = (res) => res.end('{"name":"Dana Reyes\\u0000\\u0000","note\\u0000":"ok \\ud83d"}');
      assert.deepEqual(await find(), { name: "Dana Reyes", note: "ok \ufffd" });
    });
  });
});

describe("http-fetch", async () => {
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
      res
        .writeHead(302, { location: decodeURIComponent(path.slice("/elsewhere?to=".length)) })
        .end();
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
    await go(`${base}/kept`, {
      method: "POST",
      body: "x=1",
      headers: { authorization: "Bearer a" },
    });
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
});

describe("proxy-hint", () => {
  test("an unreachable service's message tells how Node uses a proxy, and a set one it ignores", () => {
    assert.equal(
      proxyHint({}),
      " (behind an HTTP proxy, set NODE_USE_ENV_PROXY=1 and HTTPS_PROXY)",
    );
    assert.equal(
      proxyHint({ https_proxy: "http://proxy:3128" }),
      " (https_proxy is set, but is used only with NODE_USE_ENV_PROXY=1)",
    );
    assert.equal(proxyHint({ HTTPS_PROXY: "http://proxy:3128", NODE_USE_ENV_PROXY: "1" }), "");
  });
});
