import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import type { Script } from "../support/model-server.ts";

// An HTTP tool answer holding a NUL (a fixed-width field from an old system) reached jsonb as
// "\u0000", which Postgres refuses: the turn failed on every retry. Answers are cleaned now.

const crm = createServer((req, res) => {
  req.resume();
  req.on("end", () => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ name: "Dana Reyes\u0000\u0000\u0000", plan: "pro" }));
  });
});
let h: Harness;
before(async () => {
  await new Promise<void>((r) => crm.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(crm.address() as AddressInfo).port}`;
  const file = `
defaults:
  entry_agent: support
agents:
  - id: support
    name: Support
    icon: ":wave:"
    instructions: Find the customer.
    tools: [find_customer]
tools:
  - name: find_customer
    description: Find a customer by email.
    class: read
    url: ${url}/customers/find
    parameters: { type: object, properties: { email: { type: string } } }
`;
  const script: Script = (request) =>
    request.messages.some((m) => m.role === "tool")
      ? { content: "Dana is on the pro plan." }
      : { toolCalls: [{ name: "find_customer", arguments: { email: "dana@example.com" } }] };
  const names = new Set(demoTools.map((t) => t.name));
  h = await startHarness({
    script,
    agentsFile: parseAgentsFile(file, "crm.yml", names),
    jobRetries: 1,
  });
});
after(async () => {
  await h.close();
  crm.closeAllConnections();
  crm.close();
});

test("an HTTP tool answer with a NUL in it does not fail the task", async () => {
  const { ts } = await h.mention("what plan is dana@example.com on?");
  const task = await h.until(
    "the task to settle",
    async () => {
      const t = await h.db.db
        .selectFrom("tasks")
        .selectAll()
        .where("thread_ts", "=", ts)
        .executeTakeFirst();
      return t && t.status !== "active" ? t : undefined;
    },
    30_000,
  );
  assert.equal(task.status, "done");
});
