import assert from "node:assert/strict";
import { sql } from "kysely";
import type { Db } from "../../src/db/database.ts";
import type { TaskRow } from "../../src/db/schema.ts";
import type { Harness } from "./harness.ts";
import type { ChatRequest, Script, ScriptedReply } from "./model-server.ts";
import { outboxIdOf, postsInThread } from "./observe.ts";
import { finishedTask } from "./scripts-humans.ts";
import type { SlackEmulator } from "./slack-emulator.ts";

/** Flow 1, "Where's my order?", as a scripted model plays it: five hops, CS → F → I → F → CS. */
export function whereIsMyOrderScript(
  o: { orderId?: string; sku?: string } = {},
): Record<string, ScriptedReply[]> {
  const orderId = o.orderId ?? "1042";
  const sku = o.sku ?? "LAMP-OAK";
  return {
    "customer-service": [
      { toolCalls: [{ name: "lookup_order", arguments: { order_id: orderId } }] },
      {
        toolCalls: [
          {
            name: "transfer_to_fulfillment",
            arguments: {
              summary: `Order ${orderId} is stuck in fulfillment; customer asks where it is.`,
              done: [`Looked up order ${orderId}: stuck_in_fulfillment, pick failed`],
              needed: "Find out why it is stuck and ship it if possible.",
              facts: { order_id: orderId, sku: sku },
              urgency: "normal",
            },
          },
        ],
      },
      {
        content: `Good news: your order ${orderId} is on the way with UPS. You'll get tracking by email.`,
      },
    ],
    fulfillment: [
      { toolCalls: [{ name: "get_fulfillment_status", arguments: { order_id: orderId } }] },
      {
        toolCalls: [
          {
            name: "transfer_to_inventory",
            arguments: {
              summary: `Order ${orderId} cannot be picked: the system shows 0 ${sku} on hand.`,
              done: ["Checked fulfillment status: blocked by stock"],
              needed: `Check the ${sku} count and correct it if it is wrong.`,
              facts: { sku: sku },
            },
          },
        ],
      },
      { toolCalls: [{ name: "ship_order", arguments: { order_id: orderId } }] },
      {
        toolCalls: [
          {
            name: "hand_back",
            arguments: {
              result: `Order ${orderId} shipped with UPS.`,
              facts: { order_status: "shipped" },
            },
          },
        ],
      },
    ],
    inventory: [
      { toolCalls: [{ name: "check_stock", arguments: { sku: sku } }] },
      {
        toolCalls: [
          {
            name: "adjust_stock",
            arguments: {
              sku: sku,
              counted_quantity: 14,
              reason: "Cycle count found 14; system showed 0",
            },
          },
        ],
      },
      {
        toolCalls: [
          {
            name: "hand_back",
            arguments: {
              result: `${sku} corrected from 0 to 14 on hand.`,
              facts: { on_hand: 14 },
            },
          },
        ],
      },
    ],
  };
}

/**
 * Flow 1 played from what each request shows, not from a list: a turn whose write was lost is
 * asked of the model again, and gets the same answer again.
 */
export function flowOneByState(onCall: (agent: string, next: ScriptedReply) => Promise<void>) {
  const replies = whereIsMyOrderScript();
  const pick = (agent: string, i: number) => {
    const reply = replies[agent]?.[i];
    if (!reply || typeof reply === "function") throw new Error(`no reply ${i} for ${agent}`);
    return reply;
  };
  const toolsSoFar = (request: ChatRequest) => request.messages.filter((m) => m.role === "tool");
  return async (request: ChatRequest, ctx: { agentId: string | undefined }) => {
    const agent = ctx.agentId ?? "";
    const tools = toolsSoFar(request).length;
    const handedBack = request.messages.some(
      (m) => m.role === "user" && / handed back: /.test(String(m.content)),
    );
    let next: ScriptedReply;
    if (agent === "customer-service") next = pick(agent, handedBack ? 2 : tools);
    else if (agent === "fulfillment") next = pick(agent, handedBack ? 2 + tools : tools);
    else if (agent === "inventory") next = pick(agent, tools);
    else throw new Error(`no agent ${agent}`);
    await onCall(agent, next);
    return next;
  };
}

/** Plays flow 1 from a mention to the answer in Slack, and checks its end state. */
export async function playFlowOneOnce(harness: Harness): Promise<TaskRow> {
  const { ts } = await harness.mention("where is order 1042?");
  const task = await harness.until("the task to finish", () => finishedTask(harness.db.db, ts));
  await assertFlowOneDoneOnce(
    { db: harness.db.db, slack: harness.slack, until: harness.until },
    task,
    ts,
  );
  return task;
}

/** How long the task's lease has left, by the database's clock (the only task, unless named). */
export async function leaseLeftMs(db: Db, taskId?: string): Promise<number> {
  const row = await db
    .selectFrom("tasks")
    .select(sql<number>`extract(epoch from lease_until - now()) * 1000`.as("left"))
    .$if(taskId !== undefined, (q) => q.where("id", "=", taskId as string))
    .executeTakeFirstOrThrow();
  return Number(row.left);
}

/** Flow 1's end state: every effect exactly once, every ownership change once, in order. */
export async function assertFlowOneDoneOnce(
  h: { db: Db; slack: SlackEmulator; until: Harness["until"] },
  task: TaskRow,
  ts: string,
): Promise<void> {
  const { db } = h;
  assert.equal((await db.selectFrom("stock_adjustments").selectAll().execute()).length, 1);
  const stock = await db
    .selectFrom("inventory")
    .selectAll()
    .where("sku", "=", "LAMP-OAK")
    .executeTakeFirstOrThrow();
  assert.equal(stock.on_hand, 13, "counted 14, then one shipped");
  assert.equal((await db.selectFrom("shipments").selectAll().execute()).length, 1);
  const order = await db
    .selectFrom("orders")
    .selectAll()
    .where("id", "=", "1042")
    .executeTakeFirstOrThrow();
  assert.equal(order.status, "shipped");
  const toolCalls = await db
    .selectFrom("tool_calls")
    .select(["agent_id", "tool", "status"])
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
  const handoffs = await db
    .selectFrom("handoffs")
    .select(["kind", "from_id", "to_id"])
    .where("task_id", "=", task.id)
    .orderBy("id")
    .execute();
  assert.deepEqual(
    handoffs.map((x) => `${x.kind}:${x.from_id}->${x.to_id}`),
    [
      "start:U0REQUESTER->customer-service",
      "transfer:customer-service->fulfillment",
      "transfer:fulfillment->inventory",
      "hand_back:inventory->fulfillment",
      "hand_back:fulfillment->customer-service",
    ],
  );

  // The thread: no card twice, none lost, the answer last.
  const posts = await h.until("the answer in the thread", async () => {
    const all = postsInThread(h.slack, ts);
    return all.length >= 5 ? all : undefined;
  });
  const outboxIds = posts.map(outboxIdOf);
  assert.ok(outboxIds.every((id) => id !== undefined));
  assert.equal(new Set(outboxIds).size, outboxIds.length, "each outbox row posted at most once");
  assert.deepEqual(
    posts.map((c) => c.args.username),
    ["Customer Service", "Fulfillment", "Inventory", "Fulfillment", "Customer Service"],
  );
  assert.match(String(posts.at(-1)?.args.text), /on the way/);
}

/** Puts the demo data back where flow 1 starts: order 1042 stuck, LAMP-OAK counted 0, nothing shipped. */
export async function resetFlow1Data(db: Db): Promise<void> {
  await db.updateTable("orders").set({ status: "stuck_in_fulfillment" }).execute();
  await db.updateTable("inventory").set({ on_hand: 0 }).where("sku", "=", "LAMP-OAK").execute();
  await db.deleteFrom("shipments").execute();
}

/**
 * A model that answers the first question about order 1042, and every later one about order 1078
 * (a reply in the thread); `asked` keeps each request's messages, as JSON.
 */
export function answerThenReply(): { script: Script; asked: string[] } {
  const asked: string[] = [];
  const script: Script = (request) => {
    asked.push(JSON.stringify(request.messages));
    return asked.length === 1
      ? { content: "Order 1042 left the warehouse yesterday." }
      : { content: "Order 1078 ships tomorrow." };
  };
  return { script, asked };
}
