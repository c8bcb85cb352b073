import assert from "node:assert/strict";
import { test } from "node:test";
import { sql } from "kysely";
import { TASK_QUEUE } from "../../src/jobs/queue.ts";
import { crashRigs, leaseRunsOut, untilCrash } from "../support/crash-rig.ts";
import { type AgentScript, type ChatRequest, scriptByAgent } from "../support/model-server.ts";
import {
  outboxIdOf,
  postsInThread,
  taskInThread,
  taskWithStatus,
  textOf,
  toolMessages,
} from "../support/observe.ts";
import { assertFlowOneDoneOnce, whereIsMyOrderScript } from "../support/scripts.ts";

const startRig = crashRigs();

test("a worker killed between a tool call and the next step: after restart the tool has run exactly once", async () => {
  // Flow 1, except that Inventory's third call kills the process serving it: the stock was just
  // corrected and committed, and the next step (the hand-back) was never taken.
  const flow = whereIsMyOrderScript();
  const [checkStock, adjustStock, handBack] = flow.inventory ?? [];
  assert.ok(checkStock && adjustStock && handBack);
  const crash: { cutOff?: ChatRequest } = {};
  const script = scriptByAgent({
    ...flow,
    inventory: [
      checkStock,
      adjustStock,
      async (request) => {
        crash.cutOff = request;
        await rig.current?.kill();
        return { status: 500, error: "nobody is listening: the worker was killed" };
      },
      handBack,
    ],
  });
  const rig = await startRig(script);
  const first = await rig.start({ maintenance: false });
  const ts = await rig.mention("where is order 1042?");

  // The crash: the process dies while Inventory's next step is at the model.
  const cutOff = await untilCrash("the first process to be killed", async () => crash.cutOff);
  await first.exited;
  const adjusted = toolMessages(cutOff)
    .map((m) => JSON.parse(textOf(m)) as Record<string, unknown>)
    .find((r) => r.to === 14);
  assert.ok(adjusted, "the killed request carried adjust_stock's committed result");
  const orphan = await taskInThread(rig.db.db, ts);
  assert.ok(orphan);
  assert.equal(orphan.status, "active");
  assert.equal(orphan.owner_id, "inventory");
  assert.ok(
    orphan.lease_owner?.startsWith(`${first.workerId}/`),
    "the dead worker still holds the lease",
  );

  // A new process; its maintenance finds the task once the dead worker's lease has run out.
  await leaseRunsOut(rig.db, orphan.id);
  await rig.start({ maintenance: true });
  const task = await untilCrash("the task to finish", () => taskWithStatus(rig.db.db, ts, "done"));

  // The replayed script picked up where the crash cut it off: Inventory's next reply was the hand-back.
  const inventory = rig.model.requestsFor("inventory");
  assert.equal(inventory.length, 4);
  assert.deepEqual(inventory[3]?.body.messages, cutOff.messages, "the same step, asked again");
  assert.deepEqual(script.remaining(), { "customer-service": 0, fulfillment: 0, inventory: 0 });
  await assertFlowOneDoneOnce({ db: rig.db.db, slack: rig.slack, until: untilCrash }, task, ts);
});

/**
 * The same request gets the same reply, as from a deterministic model: a process killed while its
 * model call was in flight asks that same step again after the restart, and must not be handed
 * the next scripted reply.
 */
function sameReplyForSameRequest(script: AgentScript): AgentScript {
  const replies = new Map<string, ReturnType<AgentScript>>();
  const replay = ((request, ctx) => {
    const key = JSON.stringify(
      request.messages.map((m) => ({ role: m.role, content: m.content, tools: m.tool_calls })),
    );
    const known = replies.get(key);
    if (known) return known;
    const reply = script(request, ctx);
    replies.set(key, reply);
    return reply;
  }) as AgentScript;
  return Object.assign(replay, { remaining: script.remaining });
}

test("a worker killed after Slack took a card but before it was marked sent: the card is not posted twice", async () => {
  const script = scriptByAgent(whereIsMyOrderScript());
  // The next turn runs while the card is posted, so the kill may cut off its model call.
  const rig = await startRig(sameReplyForSameRequest(script));
  const first = await rig.start({ maintenance: false });
  // The kill happens inside the emulator's request handler, before Slack's answer is written:
  // the message is in Slack, the outbox row is not marked sent.
  const handoffToInventory = rig.slack.waitForCall(
    "chat.postMessage",
    (call) => {
      if (call.args.username !== "Fulfillment") return false;
      void first.kill();
      return true;
    },
    20_000,
  );
  const ts = await rig.mention("where is order 1042?");
  const cardCall = await handoffToInventory;
  await first.exited;

  const stranded = await rig.db.db
    .selectFrom("slack_outbox")
    .select(["id", "status", "attempts"])
    .where("id", "=", String(outboxIdOf(cardCall)))
    .executeTakeFirstOrThrow();
  assert.notEqual(stranded.status, "sent", "the dead process never recorded the delivery");
  const orphan = await taskInThread(rig.db.db, ts);
  assert.ok(orphan);
  assert.equal(orphan.owner_id, "inventory");

  await leaseRunsOut(rig.db, orphan.id);
  await rig.start({ maintenance: true });
  const task = await untilCrash("the task to finish", () => taskWithStatus(rig.db.db, ts, "done"));
  assert.deepEqual(script.remaining(), { "customer-service": 0, fulfillment: 0, inventory: 0 });
  await assertFlowOneDoneOnce({ db: rig.db.db, slack: rig.slack, until: untilCrash }, task, ts);
  const recovered = await rig.db.db
    .selectFrom("slack_outbox")
    .select(["status", "slack_ts"])
    .where("id", "=", stranded.id)
    .executeTakeFirstOrThrow();
  assert.equal(recovered.status, "sent");
  assert.ok(recovered.slack_ts, "the row now points at the message already in Slack");
});

test("a stop whose runs never end waits one bound in all, not one per wait, and each task resumes after it", async () => {
  // The first process's model never answers. With one worker, one task runs where it was accepted
  // and the other as a queue job (the one slot is busy): each of the two waits would take the
  // whole bound alone.
  const BOUND_MS = 2_000;
  let answering = false;
  const rig = await startRig(async () => {
    if (!answering) await new Promise<never>(() => undefined);
    return { content: "Your order is on the way." };
  });
  const { db, slack, model } = rig;
  const first = await rig.start({ maintenance: false, workers: 1, stopWaitMs: BOUND_MS });
  const threads = [
    await rig.mention("where is order 1042?"),
    await rig.mention("where is order 1043?"),
  ];
  await untilCrash("both runs to be at the model", async () => model.requests.length === 2);
  const [queued] = (
    await sql<{ taskId: string }>`
      select data->>'taskId' as "taskId" from pgboss.job
      where name = ${TASK_QUEUE} and state = 'active'`.execute(db.db)
  ).rows;
  assert.ok(queued, "one task runs as a queue job");

  const stopping = performance.now();
  await first.stop();
  const took = performance.now() - stopping;
  assert.ok(took >= BOUND_MS, `the stop waited for the runs (${Math.round(took)} ms)`);
  assert.ok(took < 2 * BOUND_MS, `the stop took ${Math.round(took)} ms: its waits added up`);

  // As after a crash: the runs cut short still hold their tasks, and the job is kept to retry.
  const cutShort: string[] = [];
  for (const ts of threads) {
    const task = await taskInThread(db.db, ts);
    assert.equal(task?.status, "active");
    assert.ok(task.lease_owner?.startsWith(`${first.workerId}/`), "its run held it to the end");
    cutShort.push(task.id);
  }
  const { rows: jobs } = await sql<{ state: string }>`
    select state from pgboss.job
    where name = ${TASK_QUEUE} and data->>'taskId' = ${queued.taskId}`.execute(db.db);
  assert.deepEqual(
    jobs.map((j) => j.state),
    ["retry"],
    "the job's try failed at the stop, to be retried",
  );

  answering = true;
  for (const taskId of cutShort) await leaseRunsOut(db, taskId);
  await rig.start({ maintenance: true });
  const answers = (ts: string) =>
    postsInThread(slack, ts).filter((c) => JSON.stringify(c.args).includes("on the way"));
  for (const ts of threads) {
    await untilCrash("the task to be done", () => taskWithStatus(db.db, ts, "done"));
    // Its status commits before its answer is in Slack.
    await untilCrash("the task's answer in its thread", async () => answers(ts).length > 0);
  }
  for (const ts of threads) assert.equal(answers(ts).length, 1, "answered once");
  assert.equal(model.requests.length, 4, "each task asked the model again once");
});
