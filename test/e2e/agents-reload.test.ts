import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { loadAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { finishedTask } from "../support/scripts-humans.ts";

// An operator edits the agents file and sends SIGHUP (reloadAgents): the new instructions apply
// from the next turn, without a restart. A file with mistakes is refused; the one in use stays.

const ORIGINAL = await readFile(new URL("../../agents.yml", import.meta.url), "utf8");
const NEW_WORDS = "Always sign your answers as Team Lamp.";

let dir: string;
let file: string;
let h: Harness;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "baton-reload-"));
  file = path.join(dir, "agents.yml");
  await writeFile(file, ORIGINAL);
  h = await startHarness({
    script: scriptByAgent({
      "customer-service": [{ content: "first" }, { content: "second" }, { content: "third" }],
    }),
    agentsFile: await loadAgentsFile(file, demoTools),
    agentsPath: file,
  });
});
after(async () => {
  await h.close();
  await rm(dir, { recursive: true, force: true });
});

/** Asks in a new thread; returns the system message Customer Service was given. */
async function systemMessageOfNextTask(): Promise<string> {
  const before = h.model.requests.length;
  const { ts } = await h.mention("where is order 1042?");
  await h.until("the answer", () => finishedTask(h.db.db, ts));
  const request = h.model.requests[before];
  assert.ok(request, "the model was asked");
  const { messages } = request.body as { messages: { role: string; content: string }[] };
  return messages.find((m) => m.role === "system")?.content ?? "";
}

test("a reloaded agents file applies from the next task; a broken one is refused and the old stays", async () => {
  assert.doesNotMatch(await systemMessageOfNextTask(), /Team Lamp/);

  await writeFile(
    file,
    ORIGINAL.replace("    instructions: |\n", `    instructions: |\n      ${NEW_WORDS}\n`),
  );
  assert.equal(await h.baton.reloadAgents(), true);
  assert.match(await systemMessageOfNextTask(), /Team Lamp/);

  await writeFile(file, ORIGINAL.replace('icon: ":speech_balloon:"', "icon: wave"));
  assert.equal(await h.baton.reloadAgents(), false);
  assert.match(await systemMessageOfNextTask(), /Team Lamp/, "the file in use stays");
});
