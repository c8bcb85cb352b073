import { startBaton } from "./app.ts";
import { loadConfig, redactedConfigSummary } from "./config/env.ts";
import { isBatonError } from "./errors.ts";
import { createLogger } from "./log.ts";

/** `npm start`: parse the environment, start Baton, stop cleanly on SIGINT/SIGTERM. */
try {
  const config = loadConfig();
  const log = createLogger({ level: config.logLevel });
  log.info({ config: redactedConfigSummary(config) }, "starting baton");
  const baton = await startBaton({ config, log });
  const shutdown = async (signal: string) => {
    log.info({ signal }, "stopping baton");
    await baton.stop();
    process.exit(0);
  };
  process.once("SIGINT", () => void shutdown("SIGINT"));
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
} catch (error) {
  // Operator mistakes get their message alone; anything else keeps its stack.
  console.error(
    isBatonError(error) && error.fault === "operator" ? `baton: ${error.message}` : error,
  );
  process.exit(1);
}
