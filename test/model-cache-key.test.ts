import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { createOpenAIModel } from "../src/model/openai-model.ts";

// A strict OpenAI-compatible server (Groq's, Cerebras's) refuses a request with a field it does not
// know; Baton's prompt_cache_key would have stopped every task at its first turn there.

const bodies: Record<string, unknown>[] = [];
const server = createServer((req, res) => {
  let raw = "";
  req.on("data", (chunk) => {
    raw += chunk;
  });
  req.on("end", () => {
    const body = JSON.parse(raw) as Record<string, unknown>;
    bodies.push(body);
    if ("prompt_cache_key" in body) {
      res.writeHead(400, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          error: {
            message: "property 'prompt_cache_key' is unsupported",
            type: "invalid_request_error",
          },
        }),
      );
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
          { index: 0, finish_reason: "stop", message: { role: "assistant", content: "hi" } },
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

test("a server that refuses prompt_cache_key is asked again without it, and not sent it again", async () => {
  const model = createOpenAIModel({ apiKey: "x", baseURL: url, maxRetries: 0 });
  const ask = () =>
    model.complete({
      model: "m",
      agentId: "billing",
      messages: [{ role: "user", content: "hi" }],
      tools: [],
    });
  assert.equal((await ask()).content, "hi");
  assert.equal((await ask()).content, "hi");
  assert.deepEqual(
    bodies.map((b) => "prompt_cache_key" in b),
    [true, false, false],
    "sent once, refused, then left out",
  );
});
