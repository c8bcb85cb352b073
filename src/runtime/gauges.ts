import { Gauge } from "prom-client";
import { within } from "../core/duration.ts";
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
    return withinScrape(inflight, log);
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

/** Well within Prometheus's default scrape timeout (10 s), and /readyz's cap. */
const READ_PATIENCE_MS = 2_000;

/**
 * A read that does not end (a lock held on approvals by a migration, a database gone silent) must
 * not hold the whole scrape: past the patience it answers with the last values, and the read
 * goes on, shared by the next scrapes until it ends.
 */
async function withinScrape<T>(read: Promise<T | undefined>, log: Logger) {
  const answer = await within(
    read.then((value) => ({ value })),
    READ_PATIENCE_MS,
  );
  if (!answer)
    log.warn("the approvals gauges' read is slow; /metrics answers with the last values");
  return answer?.value;
}
