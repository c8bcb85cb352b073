import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { sql } from "kysely";
import { type Harness, startHarness } from "../support/harness.ts";
import { type Script, scriptByAgent } from "../support/model-server.ts";
import { resetFlow1Data, whereIsMyOrderScript } from "../support/scripts.ts";
import { finishedTask, taskOfThread } from "../support/scripts-humans.ts";

// A run writes a turn's statement behind it and starts the next turn at once (turn-lane.ts). These
// tests change the task under such a run, from the model's side, while its turns are in flight.
// Each test plays flow 1 from its start.
let flow = scriptByAgent(whereIsMyOrderScript());
let beforeRequest:
  | ((agentId: string | undefined, agentCallIndex: number) => Promise<void>)
  | undefined;
const script: Script = async (request, context) => {
  await beforeRequest?.(context.agentId, context.agentCallIndex);
  return flow(request, context);
};

let h: Harness;
before(async () => {
  h = await startHarness({ script });
});
after(async () => {
  await h.close();
});

async function modelCallSteps(taskId: string): Promise<number[]> {
  const rows = await h.db.db
    .selectFrom("model_calls")
    .select("step_no")
    .where("task_id", "=", taskId)
    .orderBy("step_no")
    .execute();
  return rows.map((r) => r.step_no);
}

test("another run taking the task over mid-run: the turn behind and every one after it write nothing, and the run stops", async () => {
  beforeRequest = async (agentId, agentCallIndex) => {
    // Customer Service's second request (the transfer): its first turn has landed; now another
    // process takes the task over, as after this run's lease ran out.
    if (agentId !== "customer-service" || agentCallIndex !== 1) return;
    await h.until("the first turn to land", async () => {
      const rows = await sql`select 1 from model_calls join tasks on tasks.id = model_calls.task_id
        where tasks.status = 'active'`.execute(h.db.db);
      return rows.rows.length === 1;
    });
    await sql`update tasks set lease_owner = 'another-process/1',
      lease_until = now() + interval '10 minutes' where status = 'active'`.execute(h.db.db);
  };
  const { ts } = await h.mention("where is order 1042?");
  const task = await h.until("the task", () => taskOfThread(h.db.db, ts));
  await h.until("the run to stop", async () => {
    await h.baton.deps.runs.drain();
    return h.model.requests.length >= 2;
  });
  await h.baton.deps.runs.drain();
  assert.deepEqual(await modelCallSteps(task.id), [1], "only the turn before the takeover");
  const now = await h.db.db
    .selectFrom("tasks")
    .selectAll()
    .where("id", "=", task.id)
    .executeTakeFirstOrThrow();
  assert.equal(now.step_no, 1);
  assert.equal(now.owner_id, "customer-service");
  assert.equal(now.lease_owner, "another-process/1", "the run left the lease to its holder");
  const handoffs = await h.db.db
    .selectFrom("handoffs")
    .select("kind")
    .where("task_id", "=", task.id)
    .execute();
  assert.deepEqual(handoffs, [{ kind: "start" }], "no transfer");
  assert.equal(
    h.slack.messagesIn("C0ORDERS", ts).filter((m) => m.ts !== ts).length,
    0,
    "nothing was posted for the dropped turns",
  );
  // At most the transfer and the turn started behind it were asked: the run stopped there.
  assert.ok(h.model.requests.length <= 3, `${h.model.requests.length} requests`);
  await sql`update tasks set status = 'failed', lease_owner = null, lease_until = null
    where id = ${task.id}`.execute(h.db.db);
});

test("a reply that lands while turns are written behind is read by a later turn of the same run", async () => {
  await resetFlow1Data(h.db.db);
  flow = scriptByAgent(whereIsMyOrderScript());
  const asked = h.model.requests.length;
  let thread = "";
  let replied = false;
  beforeRequest = async (agentId) => {
    // Fulfillment's first request: the requester adds something in the thread.
    if (agentId !== "fulfillment" || replied) return;
    replied = true;
    const { status } = await h.reply(thread, "it is a birthday present, please hurry");
    assert.equal(status, 200);
  };
  const started = h.mention("where is order 1042, please?");
  thread = (await started).ts;
  const task = await h.until("the task to finish", () => finishedTask(h.db.db, thread));
  const later = h.model.requests.slice(asked);
  const readIt = later.findIndex((r) =>
    r.body.messages.some((m) => String(m.content ?? "").includes("birthday present")),
  );
  assert.ok(readIt > 0, "a later request carries the reply");
  const consumed = await h.db.db
    .selectFrom("task_inputs")
    .select("consumed_at_step")
    .where("task_id", "=", task.id)
    .execute();
  assert.equal(consumed.length, 1);
  assert.ok(consumed[0]?.consumed_at_step, "the reply was given to a turn");
  assert.equal((await h.db.db.selectFrom("shipments").selectAll().execute()).length, 1);
});
