import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ownershipHistory } from "../../src/db/ledger.repository.ts";
import { CHANNEL, type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { whereIsMyOrderScript } from "../support/scripts.ts";
import { finishedTask } from "../support/scripts-humans.ts";

let h: Harness;
before(async () => {
  h = await startHarness({ script: scriptByAgent(whereIsMyOrderScript()) });
});
after(async () => {
  await h.close();
});

test("flow 1: where is my order — CS, Fulfillment and Inventory pass the work along and back", async () => {
  const { status, ts } = await h.mention("where is order 1042?");
  assert.equal(status, 200);

  // Done, and everything it decided to say delivered to Slack.
  const task = await h.until("the task to finish", () => finishedTask(h.db.db, ts));

  const history = await ownershipHistory(h.db.db, task.id);
  assert.deepEqual(
    history.map((x) => `${x.kind}:${x.from_id}->${x.to_id}`),
    [
      "start:U0REQUESTER->customer-service",
      "transfer:customer-service->fulfillment",
      "transfer:fulfillment->inventory",
      "hand_back:inventory->fulfillment",
      "hand_back:fulfillment->customer-service",
    ],
  );

  const stock = await h.db.db
    .selectFrom("inventory")
    .selectAll()
    .where("sku", "=", "LAMP-OAK")
    .executeTakeFirstOrThrow();
  assert.equal(stock.on_hand, 13, "counted 14, then one shipped");
  const order = await h.db.db
    .selectFrom("orders")
    .selectAll()
    .where("id", "=", "1042")
    .executeTakeFirstOrThrow();
  assert.equal(order.status, "shipped");
  assert.equal((await h.db.db.selectFrom("shipments").selectAll().execute()).length, 1);

  // The thread as people read it: each agent under its own name, the answer last, from CS.
  const posts = h.slack
    .callsTo("chat.postMessage")
    .filter((c) => c.args.channel === CHANNEL && c.args.thread_ts === ts);
  const speakers = posts.map((c) => c.args.username);
  assert.deepEqual(speakers, [
    "Customer Service",
    "Fulfillment",
    "Inventory",
    "Fulfillment",
    "Customer Service",
  ]);
  for (const post of posts) assert.ok(post.args.icon_emoji, "every persona has its icon");
  const answer = posts.at(-1);
  assert.match(String(answer?.args.text), /on the way/);

  // The ledger has every model call and tool call, with idempotency keys.
  const modelCalls = await h.db.db
    .selectFrom("model_calls")
    .selectAll()
    .where("task_id", "=", task.id)
    .execute();
  assert.equal(modelCalls.length, 10);
  const toolCalls = await h.db.db
    .selectFrom("tool_calls")
    .selectAll()
    .where("task_id", "=", task.id)
    .orderBy("id")
    .execute();
  assert.deepEqual(
    toolCalls.map((t) => `${t.agent_id}:${t.tool}:${t.status}`),
    [
      "customer-service:lookup_order:done",
      "fulfillment:get_fulfillment_status:done",
      "inventory:check_stock:done",
      "inventory:adjust_stock:done",
      "fulfillment:ship_order:done",
    ],
  );
  assert.ok(toolCalls.every((t) => t.idempotency_key.startsWith(task.id)));
});
