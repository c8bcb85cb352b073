import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { CHANNEL, type Harness, startHarness } from "../support/harness.ts";
import type { Script } from "../support/model-server.ts";
import { postsInThread, taskWithStatus } from "../support/observe.ts";
import { finishedTask, toolCallsOf } from "../support/scripts-humans.ts";

// An operator's CRM that, like many real APIs, echoes the request: its headers in a 2xx debug
// echo or a 400's error, its path in a redirect's Location. What Baton filled in from `${NAME}`
// must come back out nowhere: not to the model, the ledger or Slack.
const TOKEN = "crm-secret-ECHOED-42";
const HOOK = "hook-path-secret-99";
const crm = createServer((req, res) => {
  req.resume();
  req.on("end", () => {
    if (req.url?.startsWith("/hook/")) {
      // http -> https, as a load balancer answers: Location repeats the path, secret and all.
      res.writeHead(301, { location: `https://crm.example${req.url}` });
      res.end();
      return;
    }
    const bad = req.url === "/bad";
    res.writeHead(bad ? 400 : 200, { "content-type": "application/json" });
    res.end(
      JSON.stringify(
        bad
          ? { error: `bad request; we got authorization=${req.headers.authorization}` }
          : { ok: true, echo: { authorization: req.headers.authorization } },
      ),
    );
  });
});

const FILE = (url: string) => `
defaults:
  entry_agent: support
agents:
  - id: support
    name: Support
    icon: ":wave:"
    instructions: Look up.
    tools: [crm_echo, crm_bad]
  - id: hooker
    name: Hooker
    icon: ":hook:"
    instructions: Post to the hook.
    tools: [crm_hook]
tools:
  - name: crm_echo
    description: Echo.
    class: read
    url: ${url}/echo
    headers:
      Authorization: "Bearer \${CRM_TOKEN}"
    parameters: { type: object }
  - name: crm_hook
    description: A webhook whose secret is its path, as Slack's and many others' are.
    class: read
    url: ${url}/hook/\${HOOK_SECRET}
    parameters: { type: object }
  - name: crm_bad
    description: Bad.
    class: read
    url: ${url}/bad
    headers:
      Authorization: "Bearer \${CRM_TOKEN}"
    parameters: { type: object }
`;

const script: Script = (request, ctx) => {
  if (ctx.agentId === "hooker") return { toolCalls: [{ name: "crm_hook", arguments: {} }] };
  const results = request.messages.filter((m) => m.role === "tool");
  if (results.length === 0) return { toolCalls: [{ name: "crm_echo", arguments: {} }] };
  if (results.length === 1) return { toolCalls: [{ name: "crm_bad", arguments: {} }] };
  // A model that repeats what its tools told it.
  return { content: `Tool said: ${results.map((m) => String(m.content)).join(" | ")}` };
};

let h: Harness;
before(async () => {
  await new Promise<void>((resolve) => crm.listen(0, "127.0.0.1", resolve));
  process.env.CRM_TOKEN = TOKEN;
  process.env.HOOK_SECRET = HOOK;
  const url = `http://127.0.0.1:${(crm.address() as AddressInfo).port}`;
  const names = new Set(demoTools.map((t) => t.name));
  h = await startHarness({ script, agentsFile: parseAgentsFile(FILE(url), "crm.yml", names) });
});
after(async () => {
  await h.close();
  crm.close();
  delete process.env.CRM_TOKEN;
  delete process.env.HOOK_SECRET;
});

async function auditKindsHolding(secret: string): Promise<string[]> {
  const rows = await h.db.db
    .selectFrom("audit_events")
    .select("kind")
    .where((eb) => eb(eb.cast("data", "text"), "like", `%${secret}%`))
    .execute();
  return rows.map((r) => r.kind);
}

test("an HTTP tool's credential from the environment, echoed by its server, is masked in its answer and its refusal", async () => {
  const { ts } = await h.mention("look it up");
  const task = await h.until("the task to finish", () => finishedTask(h.db.db, ts), 20_000);

  const [echo] = await toolCallsOf(h.db.db, task.id, "crm_echo");
  assert.deepEqual(
    [echo?.status, echo?.result],
    ["done", { ok: true, echo: { authorization: "Bearer [redacted]" } }],
  );
  const [bad] = await toolCallsOf(h.db.db, task.id, "crm_bad");
  assert.equal(bad?.status, "failed");

  const lastRequest = h.model.requestsFor("support").at(-1)?.body.messages ?? [];
  const toolResults = lastRequest.filter((m) => m.role === "tool").map((m) => String(m.content));
  assert.equal(toolResults.length, 2);
  assert.match(toolResults[1] ?? "", /bad request; we got authorization=Bearer \[redacted\]/);
  const answer = String(h.slack.messagesIn(CHANNEL, ts).at(-1)?.text);
  assert.match(answer, /Tool said: .*\[redacted\]/);

  const everything = JSON.stringify([
    h.model.requestsFor("support").map((r) => r.body.messages),
    await toolCallsOf(h.db.db, task.id, "crm_echo"),
    await toolCallsOf(h.db.db, task.id, "crm_bad"),
    h.slack.messagesIn(CHANNEL, ts),
  ]);
  assert.ok(!everything.includes(TOKEN), "the token reached the model, tool_calls or Slack");
  assert.deepEqual(await auditKindsHolding(TOKEN), []);
});

test("a webhook URL's path secret from the environment, repeated in a redirect's Location, is masked in the task's reason", async () => {
  const { ts } = await h.mention("hooker: ping the hook");
  const failed = await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"));
  assert.match(
    String(failed.failure_reason),
    /crm_hook .* redirects \(HTTP 301 to https:\/\/crm\.example\/hook\/\[redacted\]\): set the URL/,
  );
  const notice = await h.until("the failure notice", async () =>
    postsInThread(h.slack, ts).find((p) => /failed/.test(JSON.stringify(p.args))),
  );
  assert.match(JSON.stringify(notice.args), /redirects/);
  assert.ok(!JSON.stringify(notice.args).includes(HOOK), "the secret reached the thread");
  assert.ok(!String(failed.failure_reason).includes(HOOK));
  assert.deepEqual(await auditKindsHolding(HOOK), []);
});
