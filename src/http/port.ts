import { createServer } from "node:net";
import { ConfigError } from "../errors.ts";

/**
 * Fails with what to set when the HTTP port is taken. Bolt's HTTP receiver rejects with a bare
 * EADDRINUSE, and Socket Mode's server emits it as an 'error' no one hears, which ends the process.
 */
export function assertPortFree(port: number, setting: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", (error: NodeJS.ErrnoException) =>
      reject(
        error.code === "EADDRINUSE" || error.code === "EACCES"
          ? new ConfigError(
              `the HTTP server cannot listen on port ${port} (${error.code === "EACCES" ? "not allowed" : "another program uses it"}): set ${setting} to a free port`,
              { cause: error },
            )
          : error,
      ),
    );
    // The same address Bolt listens on: every interface.
    probe.listen(port, () => probe.close(() => resolve()));
  });
}
