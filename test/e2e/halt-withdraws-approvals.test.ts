import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { agentActivity } from "../../src/db/agent-activity.repository.ts";
import { markDeadLettered } from "../../src/runtime/dead-letters.ts";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { type ChatRequest, scriptByAgent } from "../support/model-server.ts";
import { waitForApprovalCard } from "../support/observe.ts";
import {
  auditKinds,
  blockTexts,
  buttonsOf,
  refundCall,
  refundsOf,
  settledTask,
  taskOfThread,
  toolCallsOf,
} from "../support/scripts-humans.ts";

// A task that stops (its job dead-lettered, say after a Slack outage kept its posts failing) while
// a refund waits on a billing lead: before, the card kept its buttons, and a later Approve said
// "Approved" for a refund the failed task would never make.

let h: Harness;
const seen: ChatRequest[] = [];
before(async () => {
  h = await startHarness({
    script: scriptByAgent({
      billing: [
        refundCall(),
        (request) => {
          seen.push(request);
          return { content: "I could not refund order 1077: ask again if it is still needed." };
        },
      ],
    }),
  });
});
after(async () => {
  await h.close();
});

test("a task that stops withdraws the approvals it waits on; a late click does nothing", async () => {
  const { ts } = await h.mention("billing: please refund order 1077, the lamp came back");
  const approval = await waitForApprovalCard(h, "the refund to wait on its card");
  const task = await taskOfThread(h.db.db, ts);
  assert.ok(task);

  // Its job's last try failed just now, with the refund already waiting on its card.
  await markDeadLettered(h.baton.deps, task.id, "Slack kept refusing its posts", new Date());
  await h.until("the task to fail, its words delivered", () => settledTask(h.db.db, ts, "failed"));
  const withdrawn = await h.db.db
    .selectFrom("approvals")
    .selectAll()
    .where("id", "=", approval.id)
    .executeTakeFirstOrThrow();
  assert.equal(withdrawn.status, "withdrawn");
  const update = h.slack
    .callsTo("chat.update")
    .findLast((c) => c.args.ts === approval.card_ts && !c.failed);
  assert.ok(update, "the card is updated in place");
  assert.equal(buttonsOf(update).length, 0, "no button left to click");
  assert.match(blockTexts(update).join("\n"), /Withdrawn/);
  assert.equal((await auditKinds(h.db.db, task.id, "approval_withdrawn")).length, 1);
  // The parked refund ends with the task: no report shows the stopped task waiting on it.
  const [parked] = await toolCallsOf(h.db.db, task.id, "issue_refund");
  assert.equal(parked?.status, "withdrawn");
  const [billing] = await agentActivity(h.db.db, ["billing"], 86_400_000);
  assert.equal(billing?.writes.waiting, 0, "nothing is waiting on a person");

  // A billing lead clicks the card they still had open.
  const click = await h.clickCard(
    "U0LEE",
    APPROVAL_APPROVE,
    { id: approval.id, card_ts: approval.card_ts },
    ts,
  );
  assert.equal(click.status, 200);
  const told = await h.until("the lead to be told", async () =>
    h.slack.callsTo("chat.postEphemeral").find((c) => c.args.user === "U0LEE"),
  );
  assert.match(String(told.args.text), /already withdrawn.*Nothing more was done/);
  assert.equal((await refundsOf(h.db.db)).length, 0, "no refund made");

  // The requester writes again: the task opens, and billing is told the refund was not run.
  await h.reply(ts, "any news on my refund?");
  await h.until("billing to answer", async () => seen.length > 0);
  const toolResult = seen[0]?.messages.findLast((m) => m.role === "tool");
  assert.match(String(toolResult?.content), /not run: the task stopped/);
  const [call] = await toolCallsOf(h.db.db, task.id, "issue_refund");
  assert.equal(call?.status, "withdrawn");
  assert.equal((await refundsOf(h.db.db)).length, 0, "still no refund");
});
