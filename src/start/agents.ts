import { loadAgentsFile } from "../config/agents-file.ts";
import type { AgentsFile } from "../config/agents-schema.ts";
import type { Config } from "../config/env.ts";
import { agentDirectory } from "../core/agents/directory.ts";
import { type ToolDefinition, type ToolRegistry, toolRegistry } from "../core/tools/tool.ts";
import { demoTools } from "../domain/demo-tools.ts";
import { isBatonError } from "../errors.ts";
import { httpTools } from "../http/http-tools.ts";
import { cancelNotRunnableApprovals } from "../runtime/cancelled-approvals.ts";
import type { RuntimeDeps } from "../runtime/deps.ts";

export interface Agents {
  /** The tools written in code, which every agents file may name. */
  codeTools: readonly ToolDefinition[];
  file: AgentsFile;
  tools: ToolRegistry;
}

/** The agents file Baton starts with, given or read from the file the config names. */
export async function loadAgents(options: {
  config: Config;
  agentsFile?: AgentsFile;
  tools?: readonly ToolDefinition[];
}): Promise<Agents> {
  const codeTools = options.tools ?? demoTools;
  const file = options.agentsFile ?? (await loadAgentsFile(options.config.agentsFile, codeTools));
  return { codeTools, file, tools: toolsOf(codeTools, file) };
}

/** The agents file's own tools call the operator's systems over HTTP. */
function toolsOf(codeTools: readonly ToolDefinition[], file: AgentsFile): ToolRegistry {
  return toolRegistry([...codeTools, ...httpTools(file.tools)]);
}

/**
 * Reads the agents file again into `deps`: true when it applies, false when it was refused and the
 * one in use stays.
 */
export function agentsReloader(
  config: Config,
  /** The agents Baton started with: the digest's schedule stays theirs until a restart. */
  agents: Agents,
  runtime: { deps: RuntimeDeps; checkModels(file: AgentsFile): void },
): () => Promise<boolean> {
  const { deps } = runtime;
  const { log } = deps;
  return async () => {
    try {
      const file = await loadAgentsFile(config.agentsFile, agents.codeTools);
      deps.agents = agentDirectory(file);
      deps.tools = toolsOf(agents.codeTools, file);
      const { schedule, timezone } = file.digest;
      if (schedule !== agents.file.digest.schedule || timezone !== agents.file.digest.timezone)
        log.warn("the digest's new schedule and time zone take effect at the next restart");
      log.info({ agents: file.agents.map((a) => a.id) }, "agents file reloaded");
      runtime.checkModels(file);
      // Their cards would still offer Approve: a failure here leaves each to its click.
      await cancelNotRunnableApprovals(deps).catch((error: unknown) =>
        log.error({ err: error }, "approvals the new agents file would not run were not cancelled"),
      );
      return true;
    } catch (error) {
      // An operator's mistake is told by its lines; anything else keeps its stack.
      const mistake = isBatonError(error) && error.fault === "operator";
      log.error(
        mistake ? { reason: error.message } : { err: error },
        "agents file not reloaded: the one in use stays",
      );
      return false;
    }
  };
}
