import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { ModelBehaviorError, TransientError } from "../../src/errors.ts";
import { createOpenAIModel } from "../../src/model/openai-model.ts";

/**
 * A proxy in front of the model (nginx, a gateway) answers its own errors as HTML pages; the
 * model's error message becomes the thread's failure notice, so the page must not.
 */

const NGINX_413 =
  "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n";
const KEY = "sk-test-key-not-real-0123456789";

const pages: Record<string, { status: number; type: string; body: string }> = {
  "/413/v1/chat/completions": { status: 413, type: "text/html", body: NGINX_413 },
  "/502/v1/chat/completions": {
    status: 502,
    type: "text/html",
    body: `<html><body>\n<p>Bad gateway for key ${KEY}</p>\n${"<p>trace</p>\n".repeat(500)}</body></html>`,
  },
  "/400/v1/chat/completions": {
    status: 400,
    type: "text/plain",
    body: `upstream refused the request\n${"detail ".repeat(200)}`,
  },
};

let url = "";
const server = createServer((req, res) => {
  const page = pages[req.url ?? ""] ?? { status: 404, type: "text/plain", body: "no page" };
  res.writeHead(page.status, { "content-type": page.type });
  res.end(page.body);
});
before(async () => {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => {
  server.close();
});

async function failureOf(path: string): Promise<Error> {
  const model = createOpenAIModel({ apiKey: "x", baseURL: `${url}/${path}/v1`, maxRetries: 0 });
  const messages = [{ role: "user" as const, content: "hi" }];
  return model.complete({ model: "m", agentId: "a", messages, tools: [] }).then(
    () => assert.fail("the request should fail"),
    (error: unknown) => error as Error,
  );
}

test("an HTML error page is told by its status and title", async () => {
  const error = await failureOf("413");
  assert.ok(error instanceof ModelBehaviorError);
  assert.equal(
    error.message,
    "the model server rejected the request (413): 413 Request Entity Too Large",
  );
});

test("a page without a title is told by its first line of text, short, with any key masked", async () => {
  const error = await failureOf("502");
  assert.ok(error instanceof TransientError, "a 502 is still retried");
  assert.equal(error.message, "the model server answered 502: 502 Bad gateway for key [redacted]");
});

test("a long plain-text body is told by its first line", async () => {
  const error = await failureOf("400");
  assert.equal(
    error.message,
    "the model server rejected the request (400): 400 upstream refused the request",
  );
});
