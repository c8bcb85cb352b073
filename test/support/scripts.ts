import type { ScriptedReply } from "./model-server.ts";

/** Flow 1, "Where's my order?", as a scripted model plays it: five hops, CS → F → I → F → CS. */
export function whereIsMyOrderScript(): Record<string, ScriptedReply[]> {
  return {
    "customer-service": [
      { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1042" } }] },
      {
        toolCalls: [
          {
            name: "transfer_to_fulfillment",
            arguments: {
              summary:
                "Order 1042 (oak desk lamp) is stuck in fulfillment; customer asks where it is.",
              done: ["Looked up order 1042: stuck_in_fulfillment, pick failed"],
              needed: "Find out why it is stuck and ship it if possible.",
              facts: { order_id: "1042", sku: "LAMP-OAK" },
              urgency: "normal",
            },
          },
        ],
      },
      {
        content:
          "Good news: your order 1042 (oak desk lamp) is on the way with UPS. You'll get tracking by email.",
      },
    ],
    fulfillment: [
      { toolCalls: [{ name: "get_fulfillment_status", arguments: { order_id: "1042" } }] },
      {
        toolCalls: [
          {
            name: "transfer_to_inventory",
            arguments: {
              summary: "Order 1042 cannot be picked: the system shows 0 LAMP-OAK on hand.",
              done: ["Checked fulfillment status: blocked by stock"],
              needed: "Check the LAMP-OAK count and correct it if it is wrong.",
              facts: { sku: "LAMP-OAK" },
            },
          },
        ],
      },
      { toolCalls: [{ name: "ship_order", arguments: { order_id: "1042" } }] },
      {
        toolCalls: [
          {
            name: "hand_back",
            arguments: {
              result: "Order 1042 shipped with UPS.",
              facts: { order_status: "shipped" },
            },
          },
        ],
      },
    ],
    inventory: [
      { toolCalls: [{ name: "check_stock", arguments: { sku: "LAMP-OAK" } }] },
      {
        toolCalls: [
          {
            name: "adjust_stock",
            arguments: {
              sku: "LAMP-OAK",
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
              result: "LAMP-OAK corrected from 0 to 14 on hand.",
              facts: { on_hand: 14 },
            },
          },
        ],
      },
    ],
  };
}
