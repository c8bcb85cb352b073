import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { httpToolSchema } from "../src/config/agents-schema.ts";
import { ToolInputError } from "../src/core/tools/tool.ts";
import { ConfigError, TransientError } from "../src/errors.ts";
import { httpTools } from "../src/http/http-tools.ts";
import { maskSecrets } from "../src/log.ts";

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
      assert.match(e.message, /refused Baton's credentials \(HTTP 401\): check the tool's headers/);
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
      const find = tool({ url: `${url}${at}`, headers: {} }, { WEATHER_APPID: "a1b2c3d4e5f60718" });
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
