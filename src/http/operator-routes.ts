import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";

/** A GET route on Baton's HTTP port: Bolt's receivers serve them beside Slack's requests. */
export interface HttpRoute {
  path: string;
  handler: (req: IncomingMessage, res: ServerResponse) => void;
}

/** What an operator asks every replica: /metrics, /healthz and /readyz. */
export function operatorRoutes(options: {
  metrics: Metrics;
  /** Whether the database answers within the time given. */
  databaseAnswers: (timeoutMs: number) => Promise<boolean>;
  log: Logger;
}): HttpRoute[] {
  const { metrics, databaseAnswers, log } = options;
  return [
    {
      path: "/metrics",
      handler: (_req, res) => {
        metrics.registry.metrics().then(
          (body) => {
            res.writeHead(200, { "content-type": metrics.registry.contentType });
            res.end(body);
          },
          (error: unknown) => {
            log.warn({ err: error }, "could not render /metrics");
            res.writeHead(500).end();
          },
        );
      },
    },
    // Liveness: the process answers. Readiness: it can also reach its database, so a load
    // balancer sends Slack's requests elsewhere while this replica's database is away.
    { path: "/healthz", handler: (_req, res) => res.end("ok") },
    {
      path: "/readyz",
      handler: (_req, res) => {
        void databaseAnswers(2_000).then((ready) => {
          res.writeHead(ready ? 200 : 503, { "content-type": "text/plain" });
          res.end(ready ? "ok" : "the database does not answer");
        });
      },
    },
  ];
}

/**
 * Serves `routes` alone on `port`, for a replica that takes no Slack requests (BATON_HTTP=0): its
 * counters are its own (prom-client's are per process), so it is scraped and probed as the others.
 * Anything else, /slack/events included, is a 404. Returns the stop.
 */
export async function serveRoutes(
  port: number,
  routes: readonly HttpRoute[],
): Promise<() => Promise<void>> {
  const server = createServer((req, res) => {
    const { pathname } = new URL(req.url ?? "/", "http://localhost");
    const route = req.method === "GET" ? routes.find((r) => r.path === pathname) : undefined;
    if (route) route.handler(req, res);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    // Every interface, as Bolt's receivers listen.
    server.listen(port, () => {
      server.off("error", reject);
      resolve();
    });
  });
  // Idle keep-alive connections (a scraper's) are closed too, so the stop does not wait on them.
  return () => new Promise<void>((resolve) => server.close(() => resolve()));
}
