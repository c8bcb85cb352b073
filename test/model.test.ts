import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { agentsFileSchema } from "../src/config/agents-schema.ts";
import { ModelBehaviorError, TransientError } from "../src/errors.ts";
import { createLogger } from "../src/log.ts";
import { checkAgentModels } from "../src/model/model-check.ts";
import { createOpenAIModel } from "../src/model/openai-model.ts";
import { toolCallsInText } from "../src/model/text-tool-calls.ts";

// The model adapter: the models a server lists, the real openai client against servers that say
// no (an HTML error page from a proxy too), and calls written in an answer's text. One suite per
// former test file.

describe("model-check", async () => {
  // Ollama lists a model pulled without a tag as `name:latest`, and answers to `name` alone.

  /** The warnings the check logs for an agents file using llama3.1, against a server listing `listed`. */
  async function warningsFor(
    listed: string[] | (() => Promise<string[]>),
  ): Promise<Record<string, unknown>[]> {
    const lines: Record<string, unknown>[] = [];
    const log = createLogger({
      level: "info",
      destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
    });
    const file = agentsFileSchema.parse({
      defaults: { model: "llama3.1" },
      agents: [{ id: "cs", name: "Customer Service", icon: ":wave:", instructions: "Help." }],
    });
    await checkAgentModels(typeof listed === "function" ? listed : async () => listed, file, log);
    return lines.filter((l) => Number(l.level) >= 40);
  }

  test("Ollama lists llama3.1 as llama3.1:latest, and serves it by either name: no warning", async () => {
    const warnings = await warningsFor(["llama3.1:latest", "qwen2.5:7b"]);
    assert.deepEqual(
      warnings.map((l) => l.msg),
      [],
    );
  });

  test("a server out of reach is warned of, with OPENAI_BASE_URL and how Node uses a proxy", async () => {
    const unreachable = async (): Promise<string[]> => {
      throw new TransientError("the model server could not be reached: connect ECONNREFUSED");
    };
    const proxyBefore = process.env.NODE_USE_ENV_PROXY;
    delete process.env.NODE_USE_ENV_PROXY;
    try {
      const [warning] = await warningsFor(unreachable);
      assert.match(
        String(warning?.msg),
        /^the model server could not be asked for its models: check OPENAI_BASE_URL \((behind an HTTP proxy, set NODE_USE_ENV_PROXY=1 and HTTPS_PROXY|\w+ is set, but is used only with NODE_USE_ENV_PROXY=1)\); tasks wait/,
      );
    } finally {
      if (proxyBefore !== undefined) process.env.NODE_USE_ENV_PROXY = proxyBefore;
    }
  });

  test("a model the server does not list under any tag is still named", async () => {
    const warnings = await warningsFor(["llama3.1:8b", "qwen2.5:latest"]);
    assert.deepEqual(
      warnings.map((l) => l.model),
      ["llama3.1"],
    );
  });
});

describe("model-client", async () => {
  // The real openai client against servers that say no: a 429 (Retry-After), and a strict
  // OpenAI-compatible server (Groq's, Cerebras's) that refuses a field it does not know.

  type Answer = (body: Record<string, unknown>, res: ServerResponse, req: IncomingMessage) => void;
  let answer: Answer = (_body, res) => completion(res);
  const requests: { at: number; body: Record<string, unknown> }[] = [];
  const server = createServer((req, res) => {
    let raw = "";
    req.on("data", (chunk) => {
      raw += chunk;
    });
    req.on("end", () => {
      const body = JSON.parse(raw) as Record<string, unknown>;
      requests.push({ at: Date.now(), body });
      answer(body, res, req);
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

  function completion(res: ServerResponse) {
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
  }

  function refuse(res: ServerResponse, status: number, message: string, headers = {}) {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify({ error: { message, type: "invalid_request_error" } }));
  }

  const ask = (maxRetries: number) =>
    createOpenAIModel({ apiKey: "x", baseURL: url, maxRetries }).complete({
      model: "m",
      agentId: "billing",
      messages: [{ role: "user", content: "hi" }],
      tools: [],
    });

  /** Answers with 429 `times` times (asking to wait `waitMs`), then as a model does. */
  function rateLimited(times: number, waitMs: number): Answer {
    let left = times;
    return (_body, res) => {
      if (left-- > 0) refuse(res, 429, "Rate limit reached", { "retry-after-ms": String(waitMs) });
      else completion(res);
    };
  }

  test("a 429 is waited out as the server asks, and the call answers", async () => {
    // Longer than the client's own first backoff (0.5 s at most): the wait is the server's.
    answer = rateLimited(1, 1_200);
    requests.length = 0;
    assert.equal((await ask(2)).content, "hi");
    assert.equal(requests.length, 2, "asked again once");
    const waited = (requests[1]?.at ?? 0) - (requests[0]?.at ?? 0);
    assert.ok(waited >= 1_150, `waited ${waited} ms, as Retry-After said`);
  });

  test("a server still limiting after the retries is a passing failure the job tries later", async () => {
    answer = rateLimited(3, 20);
    requests.length = 0;
    await assert.rejects(ask(2), (error: unknown) => {
      assert.ok(error instanceof TransientError);
      assert.match(error.message, /answered 429: .*Rate limit reached/);
      return true;
    });
    assert.equal(requests.length, 3);
  });

  test("a 429 that asks for minutes is waited out in place, ten minutes in all at most", async () => {
    /** Answers 429 `times` times with these headers, then as a model does. */
    const limited = (times: number, headers: Record<string, string>): Answer => {
      let left = times;
      return (_body, res) =>
        left-- > 0
          ? refuse(res, 429, "Rate limit reached: try again in 7m12s", headers)
          : completion(res);
    };
    const slept: number[] = [];
    const model = createOpenAIModel({
      apiKey: "x",
      baseURL: url,
      maxRetries: 0,
      sleep: async (ms) => void slept.push(ms),
    });
    const call = () =>
      model.complete({
        model: "m",
        agentId: "billing",
        messages: [{ role: "user", content: "hi" }],
        tools: [],
      });
    const tooLong = (error: unknown) =>
      error instanceof TransientError && /answered 429: .*try again in 7m12s/.test(error.message);

    answer = limited(1, { "retry-after": "432" });
    assert.equal((await call()).content, "hi", "asked again after the wait");
    assert.deepEqual(slept, [432_000]);

    slept.length = 0;
    answer = limited(1, { "retry-after": new Date(Date.now() + 300_000).toUTCString() });
    assert.equal((await call()).content, "hi");
    assert.ok(Math.abs((slept[0] ?? 0) - 300_000) < 3_000, `an HTTP date read as ${slept[0]} ms`);

    // A second wait past ten minutes in all, a wait longer than that, and one under a minute (the
    // client's own to wait out, with maxRetries) are the task's failure, in the server's words.
    slept.length = 0;
    answer = limited(2, { "retry-after": "432" });
    await assert.rejects(call(), tooLong);
    assert.deepEqual(slept, [432_000]);
    slept.length = 0;
    answer = limited(1, { "retry-after": "3600" });
    await assert.rejects(call(), tooLong);
    answer = limited(1, { "retry-after": "30" });
    await assert.rejects(call(), tooLong);
    assert.deepEqual(slept, []);
  });

  test("a model slower than OPENAI_TIMEOUT_SECONDS is told as slow, with the setting, not as out of reach", async () => {
    answer = (_body, res) => {
      setTimeout(() => completion(res), 1_500).unref();
    };
    const model = createOpenAIModel({ apiKey: "x", baseURL: url, maxRetries: 0, timeoutMs: 1_000 });
    const messages = [{ role: "user" as const, content: "hi" }];
    await assert.rejects(
      model.complete({ model: "m", agentId: "billing", messages, tools: [] }),
      (error: unknown) => {
        assert.ok(error instanceof TransientError, "retried: the next try may be quicker");
        assert.equal(
          error.message,
          "the model server did not answer within 1 s: a slow model needs a larger OPENAI_TIMEOUT_SECONDS",
        );
        return true;
      },
    );
  });

  test("a server that refuses prompt_cache_key is asked again without it, and not sent it again", async () => {
    answer = (body, res) =>
      "prompt_cache_key" in body
        ? refuse(res, 400, "property 'prompt_cache_key' is unsupported")
        : completion(res);
    requests.length = 0;
    const model = createOpenAIModel({ apiKey: "x", baseURL: url, maxRetries: 0 });
    const request = {
      model: "m",
      agentId: "billing",
      messages: [{ role: "user" as const, content: "hi" }],
      tools: [],
    };
    assert.equal((await model.complete(request)).content, "hi");
    assert.equal((await model.complete(request)).content, "hi");
    assert.deepEqual(
      requests.map((r) => "prompt_cache_key" in r.body),
      [true, false, false],
      "sent once, refused, then left out",
    );
  });

  test("a 200 whose body is an error (a gateway's) is a passing failure that says what the server said", async () => {
    answer = (_body, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: "Upstream provider overloaded", code: 502 } }));
    };
    await assert.rejects(ask(0), (error: unknown) => {
      assert.ok(error instanceof TransientError);
      assert.match(error.message, /returned no message: Upstream provider overloaded/);
      return true;
    });
  });

  test("a 200 whose body is empty, null, broken JSON or a page is a passing failure that says so, not a crash", async () => {
    const bodies = [
      ["application/json", "", "(an empty body)"],
      ["application/json", "null", "(null)"],
      ["application/json", '{"id": "c", "choices": [{', "(JSON that does not parse: "],
      [
        "text/html",
        "<html><head><title>Open WebUI</title></head><body>app</body></html>",
        '(a page titled "Open WebUI"): check OPENAI_BASE_URL',
      ],
    ];
    for (const [type, body, words] of bodies) {
      answer = (_body, res) => {
        res.writeHead(200, { "content-type": String(type) });
        res.end(body);
      };
      await assert.rejects(ask(0), (error: unknown) => {
        assert.ok(error instanceof TransientError, `${body}: ${String(error)}`);
        assert.ok(
          error.message.startsWith(`the model server's answer is not a chat completion ${words}`),
          error.message,
        );
        return true;
      });
    }
  });

  test("a server that refuses prompt_cache_key with 422 (Mistral's) is asked again without it", async () => {
    answer = (body, res) => {
      if (!("prompt_cache_key" in body)) return completion(res);
      res.writeHead(422, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          object: "error",
          message: {
            detail: [
              {
                type: "extra_forbidden",
                loc: ["body", "prompt_cache_key"],
                msg: "Extra inputs are not permitted",
                input: "billing",
              },
            ],
          },
          type: "invalid_request_error",
          param: null,
          code: null,
        }),
      );
    };
    requests.length = 0;
    assert.equal((await ask(0)).content, "hi");
    assert.deepEqual(
      requests.map((r) => "prompt_cache_key" in r.body),
      [true, false],
    );
  });

  // A taken id is given a new one; the new one must not be an id the model used itself.
  test("calls sharing an id get ids no other call of the reply has", async () => {
    const call = (id: string, order: string) => ({
      id,
      type: "function",
      function: { name: "lookup_order", arguments: JSON.stringify({ order_id: order }) },
    });
    const calls = [call("x_2", "1042"), call("x", "1077"), call("x", "1090"), call("x_2", "1001")];
    answer = (_body, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          id: "c",
          object: "chat.completion",
          created: 0,
          model: "m",
          choices: [
            {
              index: 0,
              finish_reason: "tool_calls",
              message: { role: "assistant", content: null, tool_calls: calls },
            },
          ],
        }),
      );
    };
    const reply = await ask(0);
    const ids = reply.toolCalls.map((c) => c.id);
    assert.equal(ids.length, 4, "four different calls");
    assert.equal(new Set(ids).size, 4, `ids ${ids.join(", ")} are unique`);
    assert.deepEqual(ids.slice(0, 2), ["x_2", "x"], "the model's own ids are kept where free");
  });
});

describe("model-text-tool-calls", async () => {
  const call = (name: string, args: Record<string, unknown>) => ({
    name,
    arguments: JSON.stringify(args),
  });

  test("the formats small models write their calls in are read as calls", () => {
    const lookup = { order_id: "1042" };
    const json = JSON.stringify({ name: "lookup_order", arguments: lookup });
    assert.deepEqual(toolCallsInText(json), [call("lookup_order", lookup)]);
    assert.deepEqual(
      toolCallsInText(`<|python_tag|>{"name": "lookup_order", "parameters": {"order_id": "1042"}}`),
      [call("lookup_order", lookup)],
    );
    assert.deepEqual(toolCallsInText(`[TOOL_CALLS] [${json}, ${json}]`), [
      call("lookup_order", lookup),
      call("lookup_order", lookup),
    ]);
    assert.deepEqual(
      toolCallsInText(`<tool_call>\n${json}\n</tool_call>\n<tool_call>${json}</tool_call>`),
      [call("lookup_order", lookup), call("lookup_order", lookup)],
    );
    assert.deepEqual(toolCallsInText(`\`\`\`json\n${json}\n\`\`\``), [
      call("lookup_order", lookup),
    ]);
    // Mistral's later form: a name, then its arguments; a call id may come between.
    assert.deepEqual(
      toolCallsInText(
        '[TOOL_CALLS]lookup_order[ARGS]{"order_id": "1042"}[TOOL_CALLS]check_stock[CALL_ID]a1B2c3D4e[ARGS]{"sku": "LAMP-01"}',
      ),
      [call("lookup_order", lookup), call("check_stock", { sku: "LAMP-01" })],
    );
  });

  test("an answer is left an answer: prose, other JSON, a call beside words", () => {
    assert.equal(toolCallsInText("Order 1042 is in the warehouse."), undefined);
    assert.equal(toolCallsInText('{"name": "Dana", "order": "1042"}'), undefined);
    assert.equal(toolCallsInText('{"name": "lookup_order"}'), undefined);
    assert.equal(
      toolCallsInText('I will look it up: {"name": "lookup_order", "arguments": {}}'),
      undefined,
    );
    assert.equal(
      toolCallsInText('<tool_call>{"name": "lookup_order", "arguments": {}}</tool_call> Done!'),
      undefined,
    );
    assert.equal(toolCallsInText("[]"), undefined);
    assert.equal(
      toolCallsInText('[TOOL_CALLS]lookup_order[ARGS]{"order_id": "1042"} Done!'),
      undefined,
    );
  });

  test("a tool's definition (a JSON Schema), as a model explaining a tool writes it, is not a call", () => {
    const definition = {
      name: "get_weather",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
    };
    assert.equal(toolCallsInText(JSON.stringify(definition, null, 2)), undefined);
    assert.equal(
      toolCallsInText(`\`\`\`json\n${JSON.stringify({ type: "function", ...definition })}\n\`\`\``),
      undefined,
    );
  });
});

describe("model-error-pages", async () => {
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
    assert.equal(
      error.message,
      "the model server answered 502: 502 Bad gateway for key [redacted]",
    );
  });

  test("a long plain-text body is told by its first line", async () => {
    const error = await failureOf("400");
    assert.equal(
      error.message,
      "the model server rejected the request (400): 400 upstream refused the request",
    );
  });
});
