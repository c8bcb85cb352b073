import type { AgentsFile } from "./config/agents-schema.ts";
import { type Config, secretValues } from "./config/env.ts";
import type { ModelPort } from "./core/model.ts";
import type { Clock } from "./core/ports.ts";
import type { ToolDefinition } from "./core/tools/tool.ts";
import { operatorRoutes } from "./http/operator-routes.ts";
import { assertPortFree } from "./http/port.ts";
import { createLogger, type Logger, registerSecrets } from "./log.ts";
import { cancelNotRunnableApprovals } from "./runtime/cancelled-approvals.ts";
import type { RuntimeDeps } from "./runtime/deps.ts";
import { agentsReloader, loadAgents } from "./start/agents.ts";
import { openBatonDatabase } from "./start/database.ts";
import { buildRuntime } from "./start/runtime.ts";
import { connectSlack, listen } from "./start/slack.ts";
import { type StopSequence, stopSequence } from "./start/stops.ts";
import { startBackground, startWorkers } from "./start/workers.ts";

export interface BatonOptions {
  config: Config;
  log?: Logger;
  /** Defaults to the file named by the config. */
  agentsFile?: AgentsFile;
  model?: ModelPort;
  tools?: readonly ToolDefinition[];
  clock?: Clock;
  /** Run task workers in this process (default true). */
  workers?: boolean;
  /** Long enough for one slow model call; tests shorten it to take over a killed worker's task. */
  leaseMs?: number;
  /** Background maintenance: orphan recovery, outbox sweep, expiries, digest (default true). */
  maintenance?: boolean;
  /** How long a stop waits in all for the work under way (default STOP_WAIT_MS); tests shorten it. */
  stopWaitMs?: number;
}

/** A stop's waits for work under way, in all: with the closes, within docker stop's 10 s. */
const STOP_WAIT_MS = 8_000;

export interface Baton {
  deps: RuntimeDeps;
  /** The HTTP port: /metrics, /healthz and /readyz in every mode, /slack/events in HTTP mode. */
  port: number;
  /**
   * Reads the agents file again (SIGHUP): its agents, tools and policies apply from each task's
   * next turn, and the approvals waiting on calls it would not run are cancelled. A file with
   * mistakes is refused, logged with its lines, and the one in use stays.
   */
  reloadAgents(): Promise<boolean>;
  stop(): Promise<void>;
}

/** Wires Baton from its parts and starts it; a start that fails stops what it started. */
export async function startBaton(options: BatonOptions): Promise<Baton> {
  const log = options.log ?? createLogger({ level: options.config.logLevel });
  // Known before anything can fail: an error that repeats a key (a gateway's 400) is masked by value.
  registerSecrets(secretValues(options.config));
  const stops = stopSequence(log, options.stopWaitMs ?? STOP_WAIT_MS);
  try {
    return await startParts(options, log, stops);
  } catch (error) {
    await stops.run();
    throw error;
  }
}

/** The parts in the order they start; each adds its stop to `stops`. Only wiring lives here. */
async function startParts(options: BatonOptions, log: Logger, stops: StopSequence): Promise<Baton> {
  const { config } = options;
  // The agents file first: a mistake in it is reported before any database starts.
  const agents = await loadAgents(options);
  // Before the database, the job queue and the workers: a start that cannot serve claims no work.
  // Checked again before it listens, for a program that takes the port in between.
  await assertPortFree(config.http.port, "PORT");
  const database = await openBatonDatabase(config, log, stops);
  const runtime = await buildRuntime(options, { database, agents, log, stops });
  const { deps } = runtime;
  // Every replica's, whether it takes Slack's requests or not.
  const routes = operatorRoutes({ metrics: deps.metrics, databaseAnswers: database.answers, log });
  const slack = await connectSlack(config, deps, routes);
  if (options.workers ?? true) await startWorkers(config, runtime, slack, stops);
  // Approvals parked under an earlier file, whose calls this one would not run: their cards would
  // offer Approve until a click. Beside the start, not before it (readiness need not wait for it);
  // at the start and a reload only, not in the sweep, where every replica still on an older file
  // (a rolling deploy) would cancel what a newer file asked for.
  deps.afterwards.run("cancel the approvals this agents file would not run", () =>
    cancelNotRunnableApprovals(deps),
  );
  if (options.maintenance ?? true) startBackground(deps, agents.file, stops);
  const port = await listen(config, slack.app, routes, stops);
  log.info(
    {
      workerId: deps.workerId,
      port,
      socketMode: config.slack.socketMode,
      slackEvents: config.http.enabled,
    },
    "baton started",
  );
  runtime.checkModels(agents.file);
  const reloadAgents = agentsReloader(config, agents, runtime);
  return { deps, port, reloadAgents, stop: stops.run };
}
