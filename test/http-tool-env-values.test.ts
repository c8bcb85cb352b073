import assert from "node:assert/strict";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { httpToolSchema } from "../src/config/agents-schema.ts";
import { httpTools } from "../src/http/http-tools.ts";

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
