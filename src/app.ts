import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { loadAgentsFile } from "./config/agents-file.ts";
import type { AgentsFile } from "./config/agents-schema.ts";
import { type Config, passwordsIn, secretValues } from "./config/env.ts";
import { agentDirectory } from "./core/agents/directory.ts";
import type { ModelPort } from "./core/model.ts";
import { type Clock, systemClock } from "./core/ports.ts";
import { type ToolDefinition, toolRegistry } from "./core/tools/tool.ts";
import {
  assertUsable,
  missingGrants,
  openDatabase,
  readinessProbe,
  sessionName,
} from "./db/database.ts";
import { startEmbeddedPostgres } from "./db/embedded.ts";
import { pendingApprovalStats } from "./db/metrics.repository.ts";
import { migrateToLatest } from "./db/migrate.ts";
import { demoTools } from "./domain/demo-tools.ts";
import { isBatonError } from "./errors.ts";
import { httpTools } from "./http/http-tools.ts";
import { operatorRoutes, serveRoutes } from "./http/operator-routes.ts";
import { assertPortFree } from "./http/port.ts";
import { startJobQueue } from "./jobs/queue.ts";
import { createLogger, type Logger, registerSecrets } from "./log.ts";
import { createMetrics } from "./metrics.ts";
import { checkAgentModels } from "./model/model-check.ts";
import { createOpenAIModel } from "./model/openai-model.ts";
import { afterwards } from "./runtime/afterwards.ts";
import { cancelNotRunnableApprovals } from "./runtime/cancelled-approvals.ts";
import { tellRepliesUnread } from "./runtime/catch-ups.ts";
import { markDeadLettered } from "./runtime/dead-letters.ts";
import type { RuntimeDeps } from "./runtime/deps.ts";
import { runDigest } from "./runtime/digest.ts";
import { recordFailedTry } from "./runtime/failed-tries.ts";
import { registerDatabaseGauges } from "./runtime/gauges.ts";
import { localRuns } from "./runtime/local-runs.ts";
import { startMaintenance } from "./runtime/maintenance.ts";
import { runTask } from "./runtime/run-task.ts";
import { startScheduler } from "./runtime/scheduler.ts";
import {
  createSlackApp,
  initSlackApp,
  noWaitClient,
  postingClient,
  startSlackApp,
  stopSlackApp,
} from "./slack/app.ts";
import { createSlackChatSurface } from "./slack/chat-surface.ts";
import { catchUpThread } from "./slack/listeners/events.ts";
import { createSlackHandlers } from "./slack/wire-handlers.ts";

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

/** Wires Baton from its parts and starts it. Only wiring lives here. */
export async function startBaton(options: BatonOptions): Promise<Baton> {
  const { config } = options;
  const log = options.log ?? createLogger({ level: config.logLevel });
  // Known before anything can fail: an error that repeats a key (a gateway's 400) is masked by value.
  registerSecrets(secretValues(config));
  // A step that waits for work under way (Slack's envelopes, the runs, the queue's jobs) waits what
  // is left of one deadline: the waits share it, rather than each adding its own.
  const stops: ((waitMs: number) => Promise<void>)[] = [];
  const stopping = new AbortController();
  const stopAll = async () => {
    // First: the runs drained below must not hold the stop for Slack's Retry-After.
    stopping.abort();
    const deadline = performance.now() + (options.stopWaitMs ?? STOP_WAIT_MS);
    for (const stop of stops.reverse())
      await stop(Math.max(0, deadline - performance.now())).catch((error) =>
        log.warn({ err: error }, "shutdown step failed"),
      );
  };
  try {
    // The agents file first: a mistake in it is reported before any database starts.
    const codeTools = options.tools ?? demoTools;
    const agentsFile = options.agentsFile ?? (await loadAgentsFile(config.agentsFile, codeTools));
    // The agents file's own tools call the operator's systems over HTTP.
    const tools = toolRegistry([...codeTools, ...httpTools(agentsFile.tools)]);
    // Before the database, the job queue and the workers: a start that cannot serve claims no work.
    // Checked again before it listens, for a program that takes the port in between.
    await assertPortFree(config.http.port, "PORT");
    let url = config.database.url;
    if (!url) {
      const embedded = await startEmbeddedPostgres({
        dataDir: config.database.dataDir,
        port: config.database.embeddedPort,
        log: (m) => log.debug({ component: "postgres" }, m),
      });
      stops.push(embedded.stop);
      url = embedded.url;
      registerSecrets(passwordsIn(url));
    }
    // Each running task may hold a connection (its turn's statements, a write tool's transaction,
    // an HTTP tool waiting on its endpoint inside it); the rest serve Slack, the sweeps and reports.
    const database = openDatabase(url, {
      max: Math.max(10, config.workers + 6),
      name: `baton-${randomBytes(6).toString("hex")}`,
    });
    stops.push(database.close);
    const readiness = readinessProbe(url);
    stops.push(readiness.close);
    const setting = config.database.url
      ? "DATABASE_URL"
      : `the embedded database in ${config.database.dataDir}`;
    await assertUsable(database.db, url, setting);
    const applied = await migrateToLatest(database.db).catch(missingGrants(url, setting));
    if (applied.length) log.info({ migrations: applied }, "database migrated");
    // As the server keeps it (cut at 63 bytes): what stamps our rows.
    const writer = await sessionName(database.db);

    const metrics = createMetrics();
    registerDatabaseGauges(metrics, () => pendingApprovalStats(database.db), log);
    const queue = await startJobQueue({ url, log, metrics, retries: config.jobRetries }).catch(
      missingGrants(url, setting),
    );
    stops.push(queue.stop);

    const workerId = `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
    const openai = options.model
      ? undefined
      : createOpenAIModel({
          apiKey: config.openai.apiKey,
          ...(config.openai.baseUrl && { baseURL: config.openai.baseUrl }),
          timeoutMs: config.openai.timeoutMs,
          log,
        });
    // In the background: a slow model server does not hold the start up.
    const checkModels = (file: AgentsFile) =>
      void (openai && checkAgentModels(openai.listModels, file, log));
    const deps: RuntimeDeps = {
      db: database.db,
      agents: agentDirectory(agentsFile),
      tools,
      model: options.model ?? (openai as ModelPort),
      chat: undefined as never,
      queue: queue.tasks,
      catchUps: queue.catchUps,
      log,
      metrics,
      clock: options.clock ?? systemClock,
      workerId,
      writer,
      leaseMs: options.leaseMs ?? 120_000,
      // Without workers nothing runs here, whether queued or started at once.
      runs: localRuns(options.workers === false ? 0 : config.workers, log),
      afterwards: afterwards(log),
      stopping: stopping.signal,
    };
    // Stopped in reverse: after Slack's requests and the runs, before the database closes.
    stops.push(() => deps.afterwards.stop());
    // Every replica's, whether it takes Slack's requests or not.
    const routes = operatorRoutes({ metrics, databaseAnswers: readiness.answers, log });
    let botUserId: Promise<string> | undefined;
    const handlers = createSlackHandlers(deps, () => {
      botUserId ??= app.client.auth.test().then(
        (r) => r.user_id ?? "",
        (error: unknown) => {
          // Not kept: the next event asks again, rather than every event failing until a restart.
          botUserId = undefined;
          throw error;
        },
      );
      return botUserId;
    });
    const app = createSlackApp(
      {
        botToken: config.slack.botToken,
        signingSecret: config.slack.signingSecret,
        port: config.http.port,
        timeoutMs: config.slack.timeoutMs,
        ...(config.slack.appToken && { appToken: config.slack.appToken }),
        ...(config.slack.apiUrl && { apiUrl: config.slack.apiUrl }),
        log,
        routes,
      },
      handlers,
    );
    const { workspaceUrl, self } = await initSlackApp(
      app,
      config.slack.apiUrl ? "SLACK_BOT_TOKEN and SLACK_API_URL" : "SLACK_BOT_TOKEN and the network",
      log,
    );
    const noWait = noWaitClient(app, log, config.slack.timeoutMs);
    deps.chat = createSlackChatSurface(app.client, {
      log,
      poster: postingClient(app, log, config.slack.timeoutMs),
      noWaitClient: noWait,
      self,
      ...(workspaceUrl && { workspaceUrl }),
    });

    if (options.workers ?? true) {
      await queue.workTasks(
        config.workers,
        (taskId) => runTask(deps, taskId),
        (failed) => recordFailedTry(deps, failed),
      );
      // Together: each needs only the database and the queue's pool (closed after both), and
      // neither's slow run eats into the other's wait.
      stops.push(async (waitMs) => {
        await Promise.all([deps.runs.stop(waitMs), queue.finishJobs(waitMs)]);
      });
      await queue.workDeadLetters((taskId, reason, failedAt) =>
        markDeadLettered(deps, taskId, reason, failedAt),
      );
      await queue.workCatchUps(
        (thread) => catchUpThread(handlers, noWait, thread, log),
        (thread, reason) => tellRepliesUnread(deps, thread, reason),
      );
    }
    // Approvals parked under an earlier file, whose calls this one would not run: their cards would
    // offer Approve until a click. Here only, and at a reload: a replica still on an older file (a
    // rolling deploy) must not cancel what a newer file asked for.
    await cancelNotRunnableApprovals(deps).catch((error: unknown) =>
      log.error({ err: error }, "approvals this agents file would not run were not cancelled"),
    );
    if (options.maintenance ?? true) {
      stops.push(startMaintenance(deps, agentsFile));
      const scheduler = startScheduler({
        schedule: agentsFile.digest.schedule,
        timezone: agentsFile.digest.timezone,
        log,
        now: () => deps.clock.now(),
        run: async (fireAt) => {
          await runDigest(
            {
              db: deps.db,
              log,
              // As reloaded since; its schedule is the one the scheduler started with.
              agentsFile: deps.agents.file,
              chat: deps.chat,
              threadLink: deps.chat.threadLink,
              writer,
            },
            fireAt,
            workerId,
          );
        },
      });
      stops.push(() => scheduler.stop());
    }

    const port = config.http.port;
    await assertPortFree(port, "PORT");
    if (config.http.enabled) {
      // The operator's routes beside Slack's requests (HTTP mode), or alone (Socket Mode).
      await startSlackApp(
        app,
        port,
        config.slack.appToken
          ? {
              appToken: config.slack.appToken,
              ...(config.slack.apiUrl && { apiUrl: config.slack.apiUrl }),
              timeoutMs: config.slack.timeoutMs,
            }
          : undefined,
      );
      stops.push((waitMs) => stopSlackApp(app, waitMs));
    } else {
      // BATON_HTTP=0, a worker-only replica: it takes no events, by HTTP or over Socket Mode.
      stops.push(await serveRoutes(port, routes));
    }
    log.info(
      { workerId, port, socketMode: config.slack.socketMode, slackEvents: config.http.enabled },
      "baton started",
    );
    checkModels(agentsFile);
    const reloadAgents = async () => {
      try {
        const file = await loadAgentsFile(config.agentsFile, codeTools);
        deps.agents = agentDirectory(file);
        deps.tools = toolRegistry([...codeTools, ...httpTools(file.tools)]);
        const { schedule, timezone } = file.digest;
        if (schedule !== agentsFile.digest.schedule || timezone !== agentsFile.digest.timezone)
          log.warn("the digest's new schedule and time zone take effect at the next restart");
        log.info({ agents: file.agents.map((a) => a.id) }, "agents file reloaded");
        checkModels(file);
        // Their cards would still offer Approve: a failure here leaves each to its click.
        await cancelNotRunnableApprovals(deps).catch((error: unknown) =>
          log.error(
            { err: error },
            "approvals the new agents file would not run were not cancelled",
          ),
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
    return { deps, port, reloadAgents, stop: stopAll };
  } catch (error) {
    await stopAll();
    throw error;
  }
}
