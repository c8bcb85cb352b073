// Baton in a child process of its own, so a test can SIGKILL it mid-task like a real crash.
// Run as a script it starts Baton from BATON_PROCESS_OPTIONS (JSON) and reports "ready" over IPC;
// imported, `spawnBaton` starts such a child and hands back its controls.
import { type ChildProcess, fork } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { startBaton } from "../../src/app.ts";
import { loadConfig } from "../../src/config/env.ts";
import { createLogger } from "../../src/log.ts";

const optionsSchema = z.object({
  databaseUrl: z.string(),
  slackApiUrl: z.string(),
  openaiBaseUrl: z.string(),
  port: z.number().int(),
  signingSecret: z.string(),
  /** BATON_AGENTS_FILE: the agents file's path (default the repository's agents.yml). */
  agentsFile: z.string().optional(),
  leaseMs: z.number().int().positive().optional(),
  maintenance: z.boolean().default(false),
  workers: z.number().int().positive().default(2),
  stopWaitMs: z.number().int().positive().optional(),
  logLevel: z.string().default("silent"),
});
export type BatonProcessOptions = z.input<typeof optionsSchema>;

const ENV_KEY = "BATON_PROCESS_OPTIONS";
const SELF = fileURLToPath(import.meta.url);
const AGENTS_FILE = fileURLToPath(new URL("../../agents.yml", import.meta.url));
const readySchema = z.object({ ready: z.literal(true), workerId: z.string() });

export interface BatonProcess {
  pid: number;
  workerId: string;
  /** Resolves when the process is gone, however it ended. */
  exited: Promise<void>;
  /** SIGKILL: no shutdown code runs, exactly like a crash. */
  kill(): Promise<void>;
  /** SIGTERM and a clean stop; SIGKILL if it does not stop in time. */
  stop(): Promise<void>;
}

export async function spawnBaton(options: BatonProcessOptions): Promise<BatonProcess> {
  const child = fork(SELF, [], {
    env: { ...process.env, [ENV_KEY]: JSON.stringify(options) },
    // Not the test runner's flags: the child is Baton, not another test process.
    execArgv: [],
    stdio: ["ignore", "pipe", "pipe", "ipc"],
  });
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString("utf8")).slice(-8_000);
    if (process.env.TEST_LOG_LEVEL) process.stderr.write(chunk);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = once(child, "exit").then(() => undefined);

  const ready = await Promise.race([
    once(child, "message").then(([message]) => readySchema.parse(message)),
    exited.then(() => {
      throw new Error(`the Baton child process exited before it was ready:\n${output}`);
    }),
  ]);
  child.disconnect();
  return {
    pid: child.pid as number,
    workerId: ready.workerId,
    exited,
    kill: () => signal(child, "SIGKILL", exited),
    async stop() {
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await signal(child, "SIGTERM", exited);
      clearTimeout(timer);
    },
  };
}

async function signal(child: ChildProcess, name: NodeJS.Signals, exited: Promise<void>) {
  if (child.exitCode === null && child.signalCode === null) child.kill(name);
  await exited;
}

async function main(raw: string): Promise<void> {
  const options = optionsSchema.parse(JSON.parse(raw));
  const baton = await startBaton({
    config: loadConfig({
      SLACK_BOT_TOKEN: "xoxb-test",
      SLACK_SIGNING_SECRET: options.signingSecret,
      SLACK_API_URL: options.slackApiUrl,
      OPENAI_API_KEY: "sk-test-key-not-real",
      OPENAI_BASE_URL: options.openaiBaseUrl,
      DATABASE_URL: options.databaseUrl,
      PORT: String(options.port),
      BATON_WORKERS: String(options.workers),
      // Read by Baton itself, as `npm start` reads it, with the demo tools.
      BATON_AGENTS_FILE: options.agentsFile ?? AGENTS_FILE,
    }),
    log: createLogger({ level: options.logLevel }),
    maintenance: options.maintenance,
    ...(options.leaseMs !== undefined && { leaseMs: options.leaseMs }),
    ...(options.stopWaitMs !== undefined && { stopWaitMs: options.stopWaitMs }),
  });
  process.once("SIGTERM", () => {
    void baton.stop().finally(() => process.exit(0));
  });
  process.send?.({ ready: true, workerId: baton.deps.workerId });
}

const raw = process.env[ENV_KEY];
if (raw !== undefined && process.argv[1] === SELF) {
  main(raw).catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
