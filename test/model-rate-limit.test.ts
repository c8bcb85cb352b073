import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { TransientError } from "../src/errors.ts";
import { createOpenAIModel } from "../src/model/openai-model.ts";

// A model server's 429: the client waits as the server asks (Retry-After) and tries again; a server
// still limiting after its retries is a passing failure, which the job's backoff tries later.

let limitedFor = 0;
let retryAfterMs = 20;
const requests: number[] = [];
const server = createServer((req, res) => {
  req.resume();
  req.on("end", () => {
    requests.push(Date.now());
    if (limitedFor > 0) {
      limitedFor--;
      res.writeHead(429, {
        "content-type": "application/json",
        "retry-after-ms": String(retryAfterMs),
      });
      res.end(JSON.stringify({ error: { message: "Rate limit reached", type: "requests" } }));
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        id: "c",
        object: "chat.completion",
        created: 0,
        model: "m",
        choices: [
          { index: 0, finish_reason: "stop", message: { role: "assistant", content: "hello" } },
        ],
      }),
    );
  });
});
let url = "";
before(async () => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});
after(() => {
  server.close();
});

const ask = (maxRetries: number) =>
  createOpenAIModel({ apiKey: "x", baseURL: url, maxRetries }).complete({
    model: "m",
    agentId: "a",
    messages: [{ role: "user", content: "hi" }],
    tools: [],
  });

test("a 429 is waited out as the server asks, and the call answers", async () => {
  limitedFor = 1;
  // Longer than the client's own first backoff (0.5 s at most): the wait is the server's.
  retryAfterMs = 1_200;
  requests.length = 0;
  const reply = await ask(2);
  assert.equal(reply.content, "hello");
  assert.equal(requests.length, 2, "asked again once");
  const waited = (requests[1] ?? 0) - (requests[0] ?? 0);
  assert.ok(waited >= 1_150, `waited ${waited} ms, as Retry-After said`);
});

test("a server still limiting after the retries is a passing failure the job tries later", async () => {
  limitedFor = 3;
  retryAfterMs = 20;
  requests.length = 0;
  await assert.rejects(ask(2), (error: unknown) => {
    assert.ok(error instanceof TransientError);
    assert.match(error.message, /answered 429: .*Rate limit reached/);
    return true;
  });
  assert.equal(requests.length, 3);
});
