import assert from "node:assert/strict";
import { test } from "node:test";
import { agentActivity } from "../../src/db/agent-activity.repository.ts";
import { insertToolCall } from "../../src/db/ledger.repository.ts";
import { agentsReport } from "../../src/slack/agents-report.ts";
import { databaseForFile, insertOrderTask } from "../support/db.ts";

const t = databaseForFile();

test("/baton agents: every write is counted under some outcome (withdrawn, approved-then-failed)", async () => {
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
  // What settle-approvals / halt write: a person approved, the tool refused; a withdrawn call.
  await write("done", "approval:a1 by U0LEE");
  await write("failed", "approval:a2 by U0LEE");
  await write("withdrawn", null);
  const [billing] = await agentActivity(t.db, ["billing"], 86_400_000);
  assert.ok(billing);
  const report = agentsReport(
    [{ id: "billing", name: "Billing", autonomy: "supervised" }],
    [billing],
    1,
  );
  const w = billing.writes;
  const counted =
    w.ran + w.approved + w.rejected + w.expired + w.waiting + w.withdrawn + w.proposed + w.failed;
  assert.equal(counted, 3, "three writes, each under one outcome");
  assert.equal(w.approved, 2, "a person approved two calls (one then failed in the tool)");
  assert.equal(w.approvedFailed, 1);
  assert.equal(w.withdrawn, 1);
  assert.match(report, /3 writes asked a person/);
});
