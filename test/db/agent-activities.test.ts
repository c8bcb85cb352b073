import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { sql } from "kysely";
import { agentActivity } from "../../src/db/agent-activity.repository.ts";
import { insertHandoff, insertToolCall } from "../../src/db/ledger.repository.ts";
import { agentsReport } from "../../src/slack/agents-report.ts";
import { databaseForFile, insertOrderTask } from "../support/db.ts";

// Agent activity reports and their outcomes. One suite per former test file.

describe("agent-activity", async () => {
  const t = databaseForFile();

  const DAY = 86_400_000;

  test("an agent's activity: its model calls, cost, writes by outcome and escalations, in the window only", async () => {
    const one = await insertOrderTask(t.db, "1700000000.000201");
    const two = await insertOrderTask(t.db, "1700000000.000202");
    let step = 0;
    const modelCall = (taskId: string, agentId: string, cost: number) =>
      t.db
        .insertInto("model_calls")
        .values({
          task_id: taskId,
          step_no: ++step,
          agent_id: agentId,
          model: "gpt-4o-mini",
          prompt_tokens: 10,
          completion_tokens: 5,
          cost_usd: cost,
          latency_ms: 3,
          request_chars: 40,
          outcome: "ok",
        })
        .execute();
    await modelCall(one.id, "billing", 0.25);
    await modelCall(one.id, "billing", 0.25);
    await modelCall(two.id, "billing", 0.5);
    await modelCall(two.id, "customer-service", 0.1);

    const write = (status: string, allowedBy: string | null, toolClass = "irreversible") =>
      insertToolCall(t.db, {
        taskId: one.id,
        stepNo: ++step,
        agentId: "billing",
        tool: "issue_refund",
        toolClass,
        args: {},
        idempotencyKey: `k-${step}`,
        status: status as "done",
        result: null,
        allowedBy,
      });
    await write("done", "policy:autonomous");
    await write("done", "approval:a1 by U0LEE");
    await write("done", "approval:a2 by U0LEE");
    await write("rejected", null);
    await write("expired", null);
    await write("pending_approval", null);
    await write("shadowed", null);
    await write("failed", "policy:autonomous");
    await write("rate_limited", null);
    await write("done", "policy:read", "read"); // reads are not writes
    await insertHandoff(t.db, {
      taskId: two.id,
      stepNo: ++step,
      kind: "escalation",
      from: { kind: "agent", id: "billing" },
      to: { kind: "human", id: "C0SUPPORT" },
      note: {},
    });
    // Forty days ago: outside a thirty-day window.
    await write("done", "policy:autonomous");
    await sql`update tool_calls set created_at = now() - interval '40 days' where idempotency_key = ${`k-${step}`}`.execute(
      t.db,
    );

    const [billing, ...rest] = await agentActivity(t.db, ["billing"], 30 * DAY);
    assert.equal(rest.length, 0, "only the agents asked for");
    assert.deepEqual(billing, {
      agentId: "billing",
      modelCalls: 3,
      costUsd: 1,
      writes: {
        ran: 1,
        approved: 2,
        approvedFailed: 0,
        approvedNotRun: 0,
        rejected: 1,
        expired: 1,
        waiting: 1,
        withdrawn: 0,
        cancelled: 0,
        proposed: 1,
        failed: 2,
      },
      escalations: 1,
    });
    const idle = await agentActivity(t.db, ["inventory"], 30 * DAY);
    assert.deepEqual(idle, [], "an agent with nothing in the window has no row");
  });
});

describe("agent-activity-outcomes", async () => {
  const t = databaseForFile();

  test("/baton agents: every write is counted under some outcome (withdrawn, approved-then-failed, cancelled)", async () => {
    const task = await insertOrderTask(t.db, "1700000000.000301");
    let step = 0;
    const write = (status: string, allowedBy: string | null) =>
      insertToolCall(t.db, {
        taskId: task.id,
        stepNo: ++step,
        agentId: "billing",
        tool: "issue_refund",
        toolClass: "irreversible",
        args: {},
        idempotencyKey: `w-${step}`,
        status: status as "done",
        result: null,
        allowedBy,
      });
    // What settle-approvals / halt write: a person approved, the tool refused; a withdrawn call;
    // approved, then not run (the agents file changed after the click); cancelled (before it).
    await write("done", "approval:a1 by U0LEE");
    await write("failed", "approval:a2 by U0LEE");
    await write("withdrawn", null);
    await write("not_run", "approval:a4 by U0LEE");
    await write("not_run", null);
    const [billing] = await agentActivity(t.db, ["billing"], 86_400_000);
    assert.ok(billing);
    const report = agentsReport(
      [{ id: "billing", name: "Billing", autonomy: "supervised" }],
      [billing],
      1,
    );
    const w = billing.writes;
    const counted =
      w.ran +
      w.approved +
      w.rejected +
      w.expired +
      w.waiting +
      w.withdrawn +
      w.cancelled +
      w.proposed +
      w.failed;
    assert.equal(counted, 5, "five writes, each under one outcome");
    assert.equal(w.approved, 3, "a person approved three calls (one then failed, one not run)");
    assert.equal(w.approvedFailed, 1);
    assert.equal(w.approvedNotRun, 1, "the cancelled call was approved by nobody");
    assert.equal(w.withdrawn, 1);
    assert.equal(w.cancelled, 1);
    assert.match(
      report,
      /5 writes asked a person: 3 approved \(1 then refused by the tool, 1 not run: the agents file changed first\), 1 withdrawn \(the task stopped first\), 1 cancelled \(the agents file changed first\)/,
    );
  });
});
