import type { AgentsFile } from "../config/agents-schema.ts";
import { isBatonError } from "../errors.ts";
import { proxyHint } from "../http/fetch.ts";
import type { Logger } from "../log.ts";

/**
 * At start and on each reload: warns when the model server cannot be asked, or does not list a
 * model an agent uses, which would otherwise show only when a task fails in its thread. Never
 * stops the start: a server that is down for a moment, or lists no models (some gateways), is not
 * a setup mistake, and the tasks' retries wait for it.
 */
export async function checkAgentModels(
  listModels: () => Promise<string[]>,
  file: AgentsFile,
  log: Logger,
): Promise<void> {
  let listed: string[];
  try {
    listed = await listModels();
  } catch (error) {
    const fault = isBatonError(error) ? error.fault : "system";
    // A server that does not list its models (404) is not one Baton can check.
    if (fault === "model") return;
    log.warn(
      { err: error },
      // The adapter's own words: a refused key, or a base URL short of its /v1.
      fault === "operator" && error instanceof Error
        ? error.message
        : `the model server could not be asked for its models: check OPENAI_BASE_URL${proxyHint()}; tasks wait and retry until it answers`,
    );
    return;
  }
  if (listed.length === 0) return;
  // Ollama lists `llama3.1:latest` and serves it as `llama3.1` too, the name its docs use.
  const known = new Set(listed.flatMap((id) => [id, id.replace(/:latest$/, "")]));
  const byModel = new Map<string, string[]>();
  for (const agent of file.agents) {
    const model = agent.model ?? file.defaults.model;
    if (!known.has(model)) byModel.set(model, [...(byModel.get(model) ?? []), agent.id]);
  }
  if (byModel.size === 0)
    log.debug({ listed: listed.length }, "the model server lists every agent's model");
  for (const [model, agents] of byModel)
    log.warn(
      { model, agents, listed: listed.slice(0, 20) },
      `the model server does not list the model "${model}": its tasks will fail; set these agents' model (or defaults.model) to one it serves`,
    );
}
