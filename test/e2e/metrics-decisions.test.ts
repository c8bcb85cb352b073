import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForApprovalCard, waitForEscalationCard } from "../support/observe.ts";
import {
  escalationScript,
  finishedTask,
  orderReturnScript,
  taskOfThread,
} from "../support/scripts-humans.ts";
import { runBaton } from "../support/slash-command.ts";

// Counters /metrics missed: a write run after a person approved it (and a rejected, expired or
// withdrawn one), and a task a person closed with /baton done.

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function counter(port: number | undefined, name: string, labels: Record<string, string>) {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
      sum += Number(line.split(" ").at(-1));
  }
  return { sum, text };
}

test("an approved write that ran is counted in baton_tool_calls_total", async () => {
  const harness = await startHarness({ script: scriptByAgent(orderReturnScript()) });
  h = harness;
  const { ts } = await harness.mention("I'd like to return order 1077, please refund me");
  const approval = await waitForApprovalCard(harness, "approval");
  await harness.clickCard("U0LEE", APPROVAL_APPROVE, approval, ts);
  await harness.until("finish", () => finishedTask(harness.db.db, ts));
  const row = await harness.db.db
    .selectFrom("tool_calls")
    .select(["status"])
    .where("tool", "=", "issue_refund")
    .executeTakeFirstOrThrow();
  assert.equal(row.status, "done", "the ledger says the refund ran");
  const { sum, text } = await counter(harness.baton.port, "baton_tool_calls_total", {
    tool: "issue_refund",
  });
  const lines = text.split("\n").filter((l) => l.startsWith("baton_tool_calls_total"));
  assert.equal(sum, 1, `issue_refund in baton_tool_calls_total:\n${lines.join("\n")}`);
});

test("a task a person closes with /baton done is counted in baton_tasks_finished_total", async () => {
  const harness = await startHarness({ script: scriptByAgent(escalationScript()) });
  h = harness;
  const { ts } = await harness.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(harness, "card");
  const task = await taskOfThread(harness.db.db, ts);
  assert.ok(task);
  await harness.clickCard("U0SUPPORTLEAD", ESCALATION_TAKE_OVER, escalation, ts);
  await harness.until("owned", async () =>
    (await taskOfThread(harness.db.db, ts))?.owner_id === "U0SUPPORTLEAD" ? true : undefined,
  );
  const answer = await runBaton(h, `done ${task.id}`, {
    user: "U0SUPPORTLEAD",
    channel: "C0SUPPORT",
  });
  assert.match(answer.text, /^Done:/);
  assert.equal((await taskOfThread(harness.db.db, ts))?.status, "done");
  const { sum, text } = await counter(harness.baton.port, "baton_tasks_finished_total", {});
  const lines = text.split("\n").filter((l) => l.startsWith("baton_tasks_"));
  assert.equal(sum, 1, `tasks finished after /baton done:\n${lines.join("\n")}`);
});
