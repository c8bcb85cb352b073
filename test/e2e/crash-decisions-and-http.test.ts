import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { sql } from "kysely";
import type { Db } from "../../src/db/database.ts";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { crashRigs, leaseRunsOut, untilCrash } from "../support/crash-rig.ts";
import { CHANNEL } from "../support/harness.ts";
import { type Script, scriptByAgent } from "../support/model-server.ts";
import { postsInThread, taskInThread, waitForApprovalCard } from "../support/observe.ts";
import { refundToolAgents } from "../support/refund-tool.ts";
import {
  blockTexts,
  buttonsOf,
  finishedTask,
  orderReturnScript,
  refundsOf,
  toolCallsOf,
} from "../support/scripts-humans.ts";
import type { SlackCall } from "../support/slack-emulator.ts";

// Kills (SIGKILL) where only the flows with a person or an operator's system reach: after an
// Approve click's decision committed, and while an HTTP write tool is at its endpoint. After the
// restart each write is done once and the task finishes as if nothing had happened.
const startRig = crashRigs();

test("a worker killed after an Approve click's decision committed, its card update at Slack: after restart one refund, the card updated, one answer", async () => {
  const flow = scriptByAgent(orderReturnScript());
  const rig = await startRig(flow);
  const { db, slack, model } = rig;
  const first = await rig.start({ maintenance: false });
  const ts = await rig.mention("I'd like to return order 1077, please refund me");
  const approval = await waitForApprovalCard({ db, until: untilCrash }, "the refund's card");

  // The card's update reaches Slack, which has not applied it yet when the process dies: only a
  // send after the restart updates the card. Baton never hears Slack's answer.
  const onCard = (c: SlackCall) => c.args.ts === approval.card_ts;
  slack.failNext("chat.update", { error: "fatal_error", status: 500 });
  const update = slack.holdAnswer("chat.update", onCard);
  const click = await rig.clickCard("U0LEE", APPROVAL_APPROVE, approval, ts);
  assert.equal(click.status, 200, "the click was answered once its decision committed");
  await slack.waitForCall("chat.update", onCard, 20_000);
  const held = await update.arrived;
  assert.ok(held.failed, "Slack did not apply the first update");
  await first.kill();
  update.release();

  const decided = await db.db
    .selectFrom("approvals")
    .select(["status", "decided_by"])
    .where("id", "=", approval.id)
    .executeTakeFirstOrThrow();
  assert.deepEqual(decided, { status: "approved", decided_by: "U0LEE" }, "the decision committed");
  const orphan = await taskInThread(db.db, ts);
  assert.ok(orphan);
  assert.deepEqual([orphan.status, orphan.owner_id], ["active", "billing"]);
  // A run of the dead process, if it took the task, sends the task's earlier rows before it
  // settles the decided call.
  assert.equal((await refundsOf(db.db)).length, 0, "the refund waits for the next run");
  assert.equal(await cardUpdateStatus(db.db, orphan.id), "pending");

  // The dead run's lease, if its worker had taken the task, must run out first.
  if (orphan.lease_owner) await leaseRunsOut(db, orphan.id);
  await rig.start({ maintenance: true });
  const task = await untilCrash("the task to finish, all it said in Slack", () =>
    finishedTask(db.db, ts),
  );

  const refunds = await refundsOf(db.db);
  assert.equal(refunds.length, 1, "one refund");
  assert.equal(Number(refunds[0]?.amount_usd), 149);
  const calls = await toolCallsOf(db.db, task.id, "issue_refund");
  assert.deepEqual(
    calls.map((c) => [c.status, c.allowed_by, c.idempotency_key]),
    [["done", `approval:${approval.id} by U0LEE`, refunds[0]?.idempotency_key]],
  );
  assert.deepEqual(flow.remaining(), { "customer-service": 0, fulfillment: 0, billing: 0 });
  assert.equal(model.requests.length, 10, "each step asked of the model once");

  // Every row sent (finishedTask), the card's update by the second process.
  assert.equal(await cardUpdateStatus(db.db, task.id), "sent");
  const [updated, ...more] = slack.callsTo("chat.update").filter((c) => !c.failed && onCard(c));
  assert.ok(updated, "the card's update was sent after the restart");
  assert.equal(more.length, 0);
  assert.match(blockTexts(updated).join("\n"), /Approved by <@U0LEE>/);
  assert.equal(buttonsOf(updated).length, 0);
  const card = slack.messagesIn(CHANNEL, ts).find((m) => m.ts === approval.card_ts);
  assert.deepEqual(card?.blocks, updated.args.blocks, "the card in Slack shows the decision");

  const posts = postsInThread(slack, ts);
  const cards = posts.filter((c) => buttonsOf(c).some((b) => b.action_id === APPROVAL_APPROVE));
  assert.equal(cards.length, 1, "the card was posted once");
  const answers = posts.filter((c) => String(c.args.text).includes("Your return of order 1077"));
  assert.equal(answers.length, 1, "one answer");
  assert.equal(answers[0]?.args.username, "Customer Service");
});

/** The status of the outbox row that updates the task's approval card to its approval. */
async function cardUpdateStatus(db: Db, taskId: string): Promise<string | undefined> {
  const row = await db
    .selectFrom("slack_outbox")
    .select("status")
    .where("task_id", "=", taskId)
    .where(sql<string>`payload #>> '{intent,approval,state,status}'`, "=", "approved")
    .executeTakeFirst();
  return row?.status;
}

test("a worker killed while an HTTP write tool is at its endpoint: the retry replays the kept reply under the same key, one refund", async (t) => {
  // The operator's refund endpoint does the work on receipt, once per key, as the README asks; the
  // first request kills Baton and is never answered.
  const received: { key: string; body: string }[] = [];
  const refunds = new Map<string, string>();
  const refunder = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk) => {
      body += chunk;
    });
    req.on("end", () => {
      const key = String(req.headers["idempotency-key"]);
      received.push({ key, body });
      if (!refunds.has(key)) refunds.set(key, `R-${refunds.size + 1}`);
      // The first call's Baton dies with it here, never answered.
      if (received.length === 1) {
        void rig.current?.kill();
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ refund: refunds.get(key) }));
    });
  });
  await new Promise<void>((resolve) => refunder.listen(0, "127.0.0.1", resolve));
  const dir = await mkdtemp(path.join(tmpdir(), "baton-http-crash-"));
  t.after(async () => {
    refunder.closeAllConnections();
    refunder.close();
    await rm(dir, { recursive: true, force: true });
  });
  const agentsFile = path.join(dir, "agents.yml");
  const url = `http://127.0.0.1:${(refunder.address() as AddressInfo).port}`;
  await writeFile(agentsFile, refundToolAgents(url, { class: "write" }));

  // Asked again for the refund's step, this model would refund another amount.
  let asked = 0;
  const script: Script = (request) => {
    if (request.messages.some((m) => m.role === "tool"))
      return { content: "Refunded 40 USD for order 1077." };
    asked++;
    const amount = 40 + asked - 1;
    return {
      toolCalls: [{ name: "refund_card", arguments: { order_id: "1077", amount_usd: amount } }],
    };
  };
  const rig = await startRig(script);
  const { db, slack, model } = rig;
  const first = await rig.start({ maintenance: false, agentsFile });
  const ts = await rig.mention("refund 40 USD on order 1077, the lamp broke");
  await untilCrash("the refund's call at its endpoint", async () => received.length > 0);
  await first.exited;

  const orphan = await taskInThread(db.db, ts);
  assert.ok(orphan);
  assert.equal(orphan.status, "active");
  assert.ok(orphan.lease_owner?.startsWith(`${first.workerId}/`), "the dead run holds the task");
  assert.equal((await toolCallsOf(db.db, orphan.id, "refund_card")).length, 0, "nothing committed");
  const kept = await db.db
    .selectFrom("model_replies")
    .select("step_no")
    .where("task_id", "=", orphan.id)
    .execute();
  assert.equal(kept.length, 1, "the model's reply was kept before the call went out");

  await leaseRunsOut(db, orphan.id);
  await rig.start({ maintenance: true, agentsFile });
  const task = await untilCrash("the task to finish, all it said in Slack", () =>
    finishedTask(db.db, ts),
  );

  assert.equal(asked, 1, "the model was asked once for the refund's step");
  assert.equal(model.requests.length, 2, "the refund's step and the answer's");
  assert.equal(received.length, 2, "the call was sent again");
  const [cut, retry] = received;
  assert.ok(cut && retry);
  assert.equal(retry.key, cut.key, "under the same Idempotency-Key");
  assert.equal(retry.body, cut.body, "with the same body");
  assert.equal(JSON.parse(cut.body).idempotency_key, cut.key);
  assert.deepEqual(JSON.parse(cut.body).arguments, { order_id: "1077", amount_usd: 40 });
  assert.equal(refunds.size, 1, "one refund");

  const calls = await toolCallsOf(db.db, task.id, "refund_card");
  assert.deepEqual(
    calls.map((c) => [c.status, c.args, c.result, c.idempotency_key]),
    [["done", { order_id: "1077", amount_usd: 40 }, { refund: "R-1" }, cut.key]],
  );
  const modelCalls = await db.db
    .selectFrom("model_calls")
    .select("id")
    .where("task_id", "=", task.id)
    .execute();
  assert.equal(modelCalls.length, 2, "each step's model call recorded once");
  const answers = postsInThread(slack, ts).filter((c) =>
    String(c.args.text).includes("Refunded 40 USD"),
  );
  assert.equal(answers.length, 1, "one answer");
});
