import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { BatonOptions } from "../app.ts";
import type { AgentsFile } from "../config/agents-schema.ts";
import { agentDirectory } from "../core/agents/directory.ts";
import type { ModelPort } from "../core/model.ts";
import { systemClock } from "../core/ports.ts";
import { pendingApprovalStats } from "../db/metrics.repository.ts";
import { type JobQueue, startJobQueue } from "../jobs/queue.ts";
import type { Logger } from "../log.ts";
import { createMetrics } from "../metrics.ts";
import { checkAgentModels } from "../model/model-check.ts";
import { createOpenAIModel } from "../model/openai-model.ts";
import { afterwards } from "../runtime/afterwards.ts";
import type { RuntimeDeps } from "../runtime/deps.ts";
import { registerDatabaseGauges } from "../runtime/gauges.ts";
import { localRuns } from "../runtime/local-runs.ts";
import type { Agents } from "./agents.ts";
import type { BatonDatabase } from "./database.ts";
import type { StopSequence } from "./stops.ts";

export interface Runtime {
  /** `chat` is Slack's, set once Slack is connected. */
  deps: RuntimeDeps;
  queue: JobQueue;
  /** Asks the model server for the agents' models, in the background. */
  checkModels(file: AgentsFile): void;
}

/** What the use cases are given: the database, the job queue, the model, the agents. */
export async function buildRuntime(
  options: BatonOptions,
  parts: { database: BatonDatabase; agents: Agents; log: Logger; stops: StopSequence },
): Promise<Runtime> {
  const { config } = options;
  const { database, agents, log, stops } = parts;
  const metrics = createMetrics();
  registerDatabaseGauges(metrics, () => pendingApprovalStats(database.db), log);
  const queue = await startJobQueue({
    url: database.url,
    log,
    metrics,
    retries: config.jobRetries,
  }).catch(database.missingGrants);
  stops.add(queue.stop);
  const openai = openAIModel(options, log);
  const deps: RuntimeDeps = {
    db: database.db,
    agents: agentDirectory(agents.file),
    tools: agents.tools,
    model: options.model ?? (openai as ModelPort),
    chat: undefined as never,
    queue: queue.tasks,
    catchUps: queue.catchUps,
    log,
    metrics,
    clock: options.clock ?? systemClock,
    workerId: `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`,
    writer: database.writer,
    leaseMs: options.leaseMs ?? 120_000,
    // Without workers nothing runs here, whether queued or started at once.
    runs: localRuns(options.workers === false ? 0 : config.workers, log),
    afterwards: afterwards(log),
    stopping: stops.signal,
  };
  // Stopped in reverse: after Slack's requests and the runs, before the database closes.
  stops.add((waitMs) => deps.afterwards.stop(waitMs));
  // In the background: a slow model server does not hold the start up.
  const checkModels = (file: AgentsFile) =>
    void (openai && checkAgentModels(openai.listModels, file, log));
  return { deps, queue, checkModels };
}

/** The OpenAI-compatible model, unless a model was given (tests, the demo). */
function openAIModel(options: BatonOptions, log: Logger) {
  const { openai } = options.config;
  return options.model
    ? undefined
    : createOpenAIModel({
        apiKey: openai.apiKey,
        ...(openai.baseUrl && { baseURL: openai.baseUrl }),
        timeoutMs: openai.timeoutMs,
        log,
      });
}
