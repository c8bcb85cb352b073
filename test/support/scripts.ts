import type { Db } from "../../src/db/database.ts";
import type { ScriptedReply } from "./model-server.ts";

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

/** Puts the demo data back where flow 1 starts: order 1042 stuck, LAMP-OAK counted 0, nothing shipped. */
export async function resetFlow1Data(db: Db): Promise<void> {
  await db.updateTable("orders").set({ status: "stuck_in_fulfillment" }).execute();
  await db.updateTable("inventory").set({ on_hand: 0 }).where("sku", "=", "LAMP-OAK").execute();
  await db.deleteFrom("shipments").execute();
}
