import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { httpToolSchema } from "../src/config/agents-schema.ts";
import { ConfigError } from "../src/errors.ts";
import { httpTools } from "../src/http/http-tools.ts";
import { maskSecrets } from "../src/log.ts";

// Which `${NAME}` values an HTTP tool treats as secrets. Every value is masked wherever it comes
// back, except one that can only be ordinary text: an API version header's value would mask every
// date equal to it, and a host would mask the links and redirects an operator must read.

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

function tool(config: Record<string, unknown>, env: Record<string, string>) {
  const parsed = httpToolSchema.parse({
    name: "find_item",
    description: "Find an item.",
    class: "read",
    timeout: "1s",
    parameters: { type: "object", properties: {} },
    ...config,
  });
  const [built] = httpTools([parsed], env);
  assert.ok(built);
  return () =>
    built.run({ tx: undefined, idempotencyKey: "t:1:0", taskId: "t", agentId: "support" }, {});
}

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

  it("a NUL or half an emoji in an answer is cleaned before Postgres sees it", async () => {
    const find = tool({ url: `${url}/find`, headers: {} }, {});
    respond = (res) => res.end('{"name":"Dana Reyes\\u0000\\u0000","note\\u0000":"ok \\ud83d"}');
    assert.deepEqual(await find(), { name: "Dana Reyes", note: "ok \ufffd" });
  });
});
