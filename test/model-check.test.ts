import assert from "node:assert/strict";
import { test } from "node:test";
import { agentsFileSchema } from "../src/config/agents-schema.ts";
import { createLogger } from "../src/log.ts";
import { checkAgentModels } from "../src/model/model-check.ts";

// Ollama lists a model pulled without a tag as `name:latest`, and answers to `name` alone.

/** The warnings the check logs for an agents file using llama3.1, against a server listing `listed`. */
async function warningsFor(listed: string[]): Promise<Record<string, unknown>[]> {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    level: "info",
    destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
  });
  const file = agentsFileSchema.parse({
    defaults: { model: "llama3.1" },
    agents: [{ id: "cs", name: "Customer Service", icon: ":wave:", instructions: "Help." }],
  });
  await checkAgentModels(async () => listed, file, log);
  return lines.filter((l) => Number(l.level) >= 40);
}

test("Ollama lists llama3.1 as llama3.1:latest, and serves it by either name: no warning", async () => {
  const warnings = await warningsFor(["llama3.1:latest", "qwen2.5:7b"]);
  assert.deepEqual(
    warnings.map((l) => l.msg),
    [],
  );
});

test("a model the server does not list under any tag is still named", async () => {
  const warnings = await warningsFor(["llama3.1:8b", "qwen2.5:latest"]);
  assert.deepEqual(
    warnings.map((l) => l.model),
    ["llama3.1"],
  );
});
