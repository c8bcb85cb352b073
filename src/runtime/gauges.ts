import { Gauge } from "prom-client";
import type { PendingApprovalStats } from "../db/metrics.repository.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";

/**
 * Gauges of state every replica shares, read from Postgres when Prometheus scrapes, so any replica
 * reports the same truth and nothing drifts between scrapes. The gauges of one scrape share one
 * query; a failed read leaves the last values and is logged, so /metrics still answers.
 */
export function registerDatabaseGauges(
  metrics: Metrics,
  readApprovals: () => Promise<PendingApprovalStats>,
  log: Logger,
): void {
  let inflight: Promise<PendingApprovalStats | undefined> | undefined;
  const read = () => {
    inflight ??= readApprovals()
      .catch((error: unknown) => {
        log.warn({ err: error }, "could not read the approvals gauges");
        return undefined;
      })
      .finally(() => {
        inflight = undefined;
      });
    return inflight;
  };
  new Gauge({
    name: "baton_approvals_waiting",
    help: "Approvals waiting for a decision",
    registers: [metrics.registry],
    async collect() {
      const stats = await read();
      if (stats) this.set(stats.waiting);
    },
  });
  new Gauge({
    name: "baton_approval_oldest_wait_seconds",
    help: "Age of the oldest approval waiting for a decision (0 when none waits)",
    registers: [metrics.registry],
    async collect() {
      const stats = await read();
      if (stats) this.set(stats.oldestAgeSeconds);
    },
  });
}
