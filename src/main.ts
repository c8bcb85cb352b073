import { startBaton } from "./app.ts";
import { loadConfig, misspelledEnv, redactedConfigSummary } from "./config/env.ts";
import { ignoredNote } from "./config/near-names.ts";
import { isBatonError } from "./errors.ts";
import { createLogger, maskSecrets } from "./log.ts";

/** `npm start`: parse the environment, start Baton, reload agents on SIGHUP, stop on SIGINT/SIGTERM. */
try {
  const config = loadConfig();
  const log = createLogger({ level: config.logLevel });
  log.info({ config: redactedConfigSummary(config) }, "starting baton");
  for (const typo of misspelledEnv())
    log.warn({ variable: typo.given, setting: typo.meant }, ignoredNote(typo));
  // A bug that escapes every handler ends the process, logged as one structured line: everything
  // accepted is in Postgres, and the supervisor's restart resumes it.
  const fatal = (error: unknown, origin: string) => {
    log.fatal({ err: error, origin }, "baton stopped on an unexpected error");
    process.exit(1);
  };
  process.on("uncaughtException", (error, origin) => fatal(error, origin));
  process.on("unhandledRejection", (reason) => fatal(reason, "unhandledRejection"));
  // SIGHUP before the start is done would end the process (Node's default): it waits for the start.
  let reload: () => Promise<unknown> = async () => {
    log.warn("SIGHUP while starting: the agents file just read is the one in use");
  };
  // One reload at a time, in the order asked: an older read never wins over a newer one.
  let reloading: Promise<unknown> = Promise.resolve();
  process.on("SIGHUP", () => {
    reloading = reloading.then(() => reload());
  });
  const baton = await startBaton({ config, log });
  reload = () => baton.reloadAgents();
  const shutdown = async (signal: string) => {
    log.info({ signal }, "stopping baton");
    await baton.stop().catch((error: unknown) => log.error({ err: error }, "shutdown failed"));
    process.exit(0);
  };
  process.once("SIGINT", () => void shutdown("SIGINT"));
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
} catch (error) {
  // Operator mistakes get their message alone; anything else is one log line with its stack, masked
  // (an error may repeat a connection string or a key), whatever LOG_LEVEL: a failed start is heard.
  if (isBatonError(error) && error.fault === "operator")
    console.error(`baton: ${maskSecrets(error.message)}`);
  else createLogger().fatal({ err: error }, "baton could not start");
  process.exit(1);
}
