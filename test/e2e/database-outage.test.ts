import assert from "node:assert/strict";
import { after, test } from "node:test";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { testServerUrl } from "../support/db.ts";
import { CHANNEL, type Harness, SIGNING_SECRET, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForApprovalCard } from "../support/observe.ts";
import { assertFlowOneDoneOnce, flowOneByState } from "../support/scripts.ts";
import { finishedTask, orderReturnScript, refundsOf } from "../support/scripts-humans.ts";
import { deliverCommand } from "../support/slack-signing.ts";
import { startPostgresProxy } from "../support/tcp-proxy.ts";

const OUTAGE_MS = 3_000;

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

test("Postgres unreachable for three seconds mid-task: Baton stays up, and the task finishes once it is back", async () => {
  const proxy = await startPostgresProxy(await testServerUrl());
  cleanups.push(proxy.close);
  let cutAt = 0;
  let restoredAt = 0;
  const h: Harness = await startHarness({
    databaseUrl: proxy.urlOf,
    // The background sweeps run too, and meet the outage like everything else.
    maintenance: true,
    script: flowOneByState(async (agent, next) => {
      const name = "toolCalls" in next ? next.toolCalls[0]?.name : undefined;
      // Inventory is about to correct the count: the database goes away under the run.
      if (agent === "inventory" && name === "adjust_stock" && cutAt === 0) {
        cutAt = Date.now();
        proxy.cut();
        setTimeout(() => {
          restoredAt = Date.now();
          proxy.restore();
        }, OUTAGE_MS);
      }
    }),
  });
  cleanups.push(h.close);

  const { status, ts } = await h.mention("where is order 1042?");
  assert.equal(status, 200);
  // The test's own connections do not go through the proxy.
  const task = await h.until("the task to finish", () => finishedTask(h.db.db, ts), 60_000);
  assert.ok(cutAt > 0 && restoredAt > 0, "the database was cut under the task, and restored");
  assert.ok(proxy.refused > 0, "Baton tried to reach the database while it was away");
  await assertFlowOneDoneOnce({ db: h.db.db, slack: h.slack, until: h.until }, task, ts);
});

test("an Approve clicked, or /baton asked, while Postgres is away: the person is told nothing was done, and the click counts once it is back", async () => {
  const proxy = await startPostgresProxy(await testServerUrl());
  cleanups.push(proxy.close);
  const h = await startHarness({
    databaseUrl: proxy.urlOf,
    script: scriptByAgent(orderReturnScript()),
  });
  cleanups.push(h.close);
  const { ts } = await h.mention("I'd like to return order 1077, please refund me");
  const approval = await waitForApprovalCard(h, "the refund to wait on its card");

  const ready = () => fetch(new URL("/readyz", h.endpoint));
  assert.equal((await ready()).status, 200);
  proxy.cut();
  const away = await ready();
  assert.equal(away.status, 503, "not ready while its database is away");
  assert.equal(await away.text(), "the database does not answer");
  assert.equal((await fetch(new URL("/healthz", h.endpoint))).status, 200, "but alive");
  const click = await h.clickCard("U0LEE", APPROVAL_APPROVE, approval, ts);
  assert.equal(click.status, 200, "Slack gets its answer: the approver is told instead");
  const told = h.slack.ephemerals.filter((e) => e.user === "U0LEE");
  assert.equal(told.length, 1);
  assert.equal(told[0]?.channel, CHANNEL);
  assert.equal(told[0]?.thread_ts, ts);
  assert.match(
    String(told[0]?.text),
    /^Baton could not reach its database just now, so nothing was done\. Try again in a minute\.$/,
  );
  // A command answers through its response_url.
  const asked = await deliverCommand(h.endpoint, SIGNING_SECRET, {
    command: "/baton",
    text: "status 1077",
    user_id: "U0OPS",
    channel_id: CHANNEL,
    response_url: h.slack.responseUrl,
  });
  assert.equal(asked.status, 200);
  const answer = await h.until(
    "the answer to /baton",
    async () => h.slack.callsTo("response_url")[0],
  );
  assert.equal(answer.args.response_type, "ephemeral");
  assert.match(String(answer.args.text), /could not reach its database/);
  const pending = await h.db.db
    .selectFrom("approvals")
    .select("status")
    .where("id", "=", approval.id)
    .executeTakeFirstOrThrow();
  assert.equal(pending.status, "pending");

  proxy.restore();
  // A pooled connection the outage broke fails once before it is replaced: ready again soon.
  await h.until("ready again", async () => (await ready()).status === 200 || undefined);
  const again = await h.clickCard("U0LEE", APPROVAL_APPROVE, approval, ts);
  assert.equal(again.status, 200);
  await h.until("the task to finish", () => finishedTask(h.db.db, ts), 30_000);
  assert.equal((await refundsOf(h.db.db)).length, 1, "one refund, from the second click");
  assert.equal(h.slack.ephemerals.filter((e) => e.user === "U0LEE").length, 1);
});
