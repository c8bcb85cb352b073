import { Counter, collectDefaultMetrics, Histogram, Registry } from "prom-client";

/**
 * The numbers an operator watches, on /metrics in Prometheus format. Counters and histograms are
 * per process (Prometheus sums the replicas); the gauges of shared state (approvals waiting) are
 * read from Postgres at scrape time, see src/runtime/gauges.ts.
 */
export function createMetrics() {
  const registry = new Registry();
  // Node's own under their standard names (process_cpu_user_seconds_total, nodejs_eventloop_lag_seconds,
  // ...), which ready-made Node.js dashboards query; Prometheus's job label tells the services apart.
  collectDefaultMetrics({ register: registry });
  const m = {
    registry,
    handoffs: new Counter({
      name: "baton_handoffs_total",
      help: "Ownership changes, by kind and from/to owner",
      labelNames: ["kind", "from", "to"] as const,
      registers: [registry],
    }),
    handoffLatency: new Histogram({
      name: "baton_handoff_latency_seconds",
      help: "Time from a handoff to an agent (start, transfer, hand_back, human_return, approval_decision) until that agent's first turn commits",
      labelNames: ["kind", "to"] as const,
      buckets: [0.05, 0.1, 0.5, 1, 5, 30, 120, 600, 3600, 14400, 86400],
      registers: [registry],
    }),
    approvalDecisionWait: new Histogram({
      name: "baton_approval_decision_seconds",
      help: "Time from an approval request to its decision (decided_at - created_at), observed when the agent resumes",
      labelNames: ["decision"] as const,
      buckets: [1, 10, 60, 300, 900, 3600, 14400, 43200, 86400],
      registers: [registry],
    }),
    tasksStarted: new Counter({
      name: "baton_tasks_started_total",
      help: "Tasks started; escalation rate = baton_escalations_total / baton_tasks_started_total",
      registers: [registry],
    }),
    tasksFinished: new Counter({
      name: "baton_tasks_finished_total",
      help: "Ends tasks reached, by outcome (answered, failed, closed by a person); a task reopened by a reply and ended again counts again",
      labelNames: ["outcome"] as const,
      registers: [registry],
    }),
    escalations: new Counter({
      name: "baton_escalations_total",
      help: "Tasks handed to a human, by reason",
      labelNames: ["reason"] as const,
      registers: [registry],
    }),
    modelTokens: new Counter({
      name: "baton_model_tokens_total",
      help: "Model tokens, by agent and direction",
      labelNames: ["agent", "direction"] as const,
      registers: [registry],
    }),
    modelCostUsd: new Counter({
      name: "baton_model_cost_usd_total",
      help: "Model cost in USD, by agent",
      labelNames: ["agent"] as const,
      registers: [registry],
    }),
    modelLatency: new Histogram({
      name: "baton_model_call_seconds",
      help: "Model call latency",
      labelNames: ["agent"] as const,
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30],
      registers: [registry],
    }),
    completedTaskCost: new Histogram({
      name: "baton_completed_task_cost_usd",
      help: "Model cost per completed task (the task's total each time it is answered: a task reopened by a reply is observed again, with its new total)",
      buckets: [0.0001, 0.001, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: [registry],
    }),
    completedTaskTokens: new Histogram({
      name: "baton_completed_task_tokens",
      help: "Model tokens per completed task (the task's total each time it is answered: a task reopened by a reply is observed again, with its new total)",
      buckets: [100, 500, 1000, 5000, 10000, 50000, 100000],
      registers: [registry],
    }),
    toolCalls: new Counter({
      name: "baton_tool_calls_total",
      help: "Tool calls, by tool and outcome",
      labelNames: ["tool", "outcome"] as const,
      registers: [registry],
    }),
    toolLatency: new Histogram({
      name: "baton_tool_call_seconds",
      help: "How long a tool took to run, by tool and outcome (done, failed: refused by the tool, error: aborted the turn)",
      labelNames: ["tool", "outcome"] as const,
      buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 1, 2, 5, 10, 30],
      registers: [registry],
    }),
    jobFailures: new Counter({
      name: "baton_job_failures_total",
      help: "Job attempts that failed, by queue",
      labelNames: ["queue"] as const,
      registers: [registry],
    }),
    deadLetters: new Counter({
      name: "baton_dead_letters_total",
      help: "Jobs that exhausted their retries, by queue",
      labelNames: ["queue"] as const,
      registers: [registry],
    }),
    slackEvents: new Counter({
      name: "baton_slack_events_total",
      help: "Slack events received, by outcome (started, continued, duplicate, ignored, and refused: rate_limited, empty_mention, mention_in_edit, reply_to_notice)",
      labelNames: ["outcome"] as const,
      registers: [registry],
    }),
  };
  return m;
}

export type Metrics = ReturnType<typeof createMetrics>;
