import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { loadAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { type ChatRequest, scriptByAgent } from "../support/model-server.ts";
import { finishedTask } from "../support/scripts-humans.ts";

// After SIGHUP the agents, tools and policies apply from each task's next turn, a run under way too.
// Here the reload happens while turn 1's model call is under way; turn 2 of the same run should
// see the new file: the new instructions, and lookup_order no longer in Customer Service's tools.

const ORIGINAL = await readFile(new URL("../../agents.yml", import.meta.url), "utf8");
const NEW_WORDS = "Always sign your answers as Team Lamp.";
const EDITED = ORIGINAL.replace(
  "    instructions: |\n",
  `    instructions: |\n      ${NEW_WORDS}\n`,
).replace("tools: [lookup_order, check_return_eligibility]", "tools: [check_return_eligibility]");

let dir: string;
let file: string;
let h: Harness;
let reloaded: boolean | undefined;
let second: ChatRequest | undefined;
before(async () => {
  assert.notEqual(EDITED, ORIGINAL);
  dir = await mkdtemp(path.join(tmpdir(), "baton-reload-mid-"));
  file = path.join(dir, "agents.yml");
  await writeFile(file, ORIGINAL);
  h = await startHarness({
    script: scriptByAgent({
      "customer-service": [
        async () => {
          // The operator edits the file and sends SIGHUP while the model answers turn 1.
          await writeFile(file, EDITED);
          reloaded = await h.baton.reloadAgents();
          return { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1042" } }] };
        },
        (request) => {
          second = request;
          // The reloaded file took lookup_order away from Customer Service: this call is outside its role.
          return { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1077" } }] };
        },
        { content: "done" },
      ],
    }),
    agentsFile: await loadAgentsFile(file, demoTools),
    agentsPath: file,
  });
});
after(async () => {
  await h.close();
  await rm(dir, { recursive: true, force: true });
});

test("a reload during a run applies from that task's next turn", async () => {
  const { ts } = await h.mention("where is order 1042?");
  await h.until("the answer", () => finishedTask(h.db.db, ts));
  assert.equal(reloaded, true);
  assert.ok(second, "turn 2 asked the model");
  const system = second.messages.find((m) => m.role === "system");
  const toolNames = (second.tools as { function: { name: string } }[]).map((t) => t.function.name);
  const calls = await h.db.db
    .selectFrom("tool_calls")
    .select(["tool", "status", "args", "result"])
    .orderBy("id")
    .execute();
  const problems: string[] = [];
  if (!/Team Lamp/.test(String(system?.content))) problems.push("turn 2 has the old instructions");
  if (toolNames.includes("lookup_order")) problems.push("turn 2 was offered lookup_order");
  const after = calls.find((c) => (c.args as { order_id?: string }).order_id === "1077");
  if (after?.status === "done")
    problems.push(`lookup_order ran after the reload removed it: ${JSON.stringify(after)}`);
  assert.deepEqual(problems, []);
});
