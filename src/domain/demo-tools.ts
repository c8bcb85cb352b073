import { z } from "zod";
import { type ToolContext, type ToolDefinition, ToolInputError } from "../core/tools/tool.ts";
import type { Executor, Tx } from "../db/database.ts";
import * as demo from "../db/demo.repository.ts";

/**
 * The demo business's tools. Each writes through the turn's transaction, so its effect and the
 * record of the call commit together; its idempotency key makes a replay return the first result.
 * A result is resent with every later call of the stint, so it carries no argument the model just
 * sent (the arguments are stored beside it), no prose a field already says, and no field that only
 * restates the call's success; keys are the shortest that still read alone ("on_hand" is the
 * system's count, as the tool descriptions say).
 */
const orderId = z
  .string()
  .trim()
  .regex(/^\d{1,12}$/, "an order id is digits, like 1042");
const sku = z
  .string()
  .trim()
  .regex(/^[A-Z0-9-]{2,40}$/, "a SKU looks like LAMP-OAK");
// Read tools may get the pool (a turn that only reads runs without a transaction); write tools
// always get the turn's transaction, so their effect commits with the record of the call.
const reads = (ctx: ToolContext) => ctx.tx as Executor;
const tx = (ctx: ToolContext) => ctx.tx as Tx;
const RETURN_WINDOW_DAYS = 30;

async function requireOrder(ctx: ToolContext, id: string) {
  const order = await demo.findOrder(reads(ctx), id);
  if (!order) throw new ToolInputError(`order ${id} does not exist`);
  return order;
}

const lookupOrder: ToolDefinition<{ order_id: string }> = {
  name: "lookup_order",
  label: "look up the order",
  description:
    "Look up an order: customer, item, status, why it is blocked, and tracking once shipped.",
  toolClass: "read",
  input: z.object({ order_id: orderId }),
  async run(ctx, { order_id }) {
    const o = await requireOrder(ctx, order_id);
    return {
      customer: o.customer_name,
      item: o.item,
      sku: o.sku,
      quantity: o.quantity,
      total_usd: Number(o.total_usd),
      status: o.status,
      ...(o.blocked_reason && { blocked_reason: o.blocked_reason }),
      ...(o.tracking_number && { carrier: o.carrier, tracking: o.tracking_number }),
    };
  },
};

const fulfillmentStatus: ToolDefinition<{ order_id: string }> = {
  name: "get_fulfillment_status",
  label: "check the order's fulfillment",
  description:
    "Fulfillment view of an order: pick status, what blocks it, and the stock of its item.",
  toolClass: "read",
  input: z.object({ order_id: orderId }),
  async run(ctx, { order_id }) {
    const o = await requireOrder(ctx, order_id);
    const blocked = o.on_hand < o.quantity && o.status !== "shipped";
    return {
      status: o.status,
      sku: o.sku,
      needed: o.quantity,
      on_hand: o.on_hand,
      ...(blocked && { blocked_by: "stock" }),
    };
  },
};

const checkStock: ToolDefinition<{ sku: string }> = {
  name: "check_stock",
  label: "check the stock",
  description: "Stock of a SKU: on hand in the system and the last physical cycle count.",
  toolClass: "read",
  input: z.object({ sku }),
  async run(ctx, input) {
    const stock = await demo.findStock(reads(ctx), input.sku);
    if (!stock) throw new ToolInputError(`SKU ${input.sku} does not exist`);
    return {
      item: stock.name,
      on_hand: stock.on_hand,
      physical_count: stock.physical_count,
    };
  },
};

const adjustStock: ToolDefinition<{ sku: string; counted_quantity: number; reason: string }> = {
  name: "adjust_stock",
  label: "adjust the stock count",
  description: "Correct the system's on-hand count of a SKU to the physically counted quantity.",
  toolClass: "write",
  input: z.object({
    sku,
    counted_quantity: z.number().int().min(0).max(1_000_000),
    reason: z.string().trim().min(3).max(300),
  }),
  async run(ctx, input) {
    const adj = await demo.adjustStock(tx(ctx), {
      sku: input.sku,
      count: input.counted_quantity,
      reason: input.reason,
      key: ctx.idempotencyKey,
    });
    if (!adj) throw new ToolInputError(`SKU ${input.sku} does not exist`);
    return { from: adj.from_count, to: adj.to_count };
  },
};

const shipOrder: ToolDefinition<{ order_id: string }> = {
  name: "ship_order",
  label: "ship the order",
  description: "Pick, pack and ship an order. Fails if the system shows too little stock.",
  toolClass: "write",
  input: z.object({ order_id: orderId }),
  async run(ctx, { order_id }) {
    const { shipment, error } = await demo.shipOrder(tx(ctx), {
      orderId: order_id,
      key: ctx.idempotencyKey,
    });
    if (!shipment) throw new ToolInputError(error ?? "could not ship");
    // Only a shipped order gets here: a status field would say nothing more.
    return { carrier: shipment.carrier, tracking: shipment.tracking_number };
  },
};

const returnEligibility: ToolDefinition<{ order_id: string }> = {
  name: "check_return_eligibility",
  label: "check whether the order can be returned",
  description: `Whether an order can be returned (delivered within ${RETURN_WINDOW_DAYS} days, not yet refunded).`,
  toolClass: "read",
  input: z.object({ order_id: orderId }),
  async run(ctx, { order_id }) {
    const o = await requireOrder(ctx, order_id);
    const refunds = await demo.refundsFor(reads(ctx), order_id);
    const days = o.days_since_delivery;
    const eligible =
      o.status === "delivered" &&
      days !== null &&
      days <= RETURN_WINDOW_DAYS &&
      refunds.length === 0;
    return {
      eligible,
      total_usd: Number(o.total_usd),
      days_since_delivery: days,
      status: o.status,
    };
  },
};

const createReturnLabel: ToolDefinition<{ order_id: string }> = {
  name: "create_return_label",
  label: "create a return label",
  description: "Issue a prepaid return label for a delivered order.",
  toolClass: "write",
  input: z.object({ order_id: orderId }),
  async run(ctx, { order_id }) {
    const o = await requireOrder(ctx, order_id);
    if (o.status !== "delivered")
      throw new ToolInputError(`order ${order_id} is ${o.status}, not delivered`);
    const ret = await demo.createReturn(tx(ctx), order_id, `RMA-${order_id}`);
    return { label_code: ret.label_code, status: ret.status };
  },
};

const receiveReturn: ToolDefinition<{ order_id: string }> = {
  name: "receive_return",
  label: "receive the returned item",
  description: "Record that the returned item arrived at the warehouse.",
  toolClass: "write",
  input: z.object({ order_id: orderId }),
  async run(ctx, { order_id }) {
    const ret = await demo.receiveReturn(tx(ctx), order_id);
    if (!ret) throw new ToolInputError(`order ${order_id} has no return label yet`);
    return { status: ret.status };
  },
};

const issueRefund: ToolDefinition<{ order_id: string; amount_usd: number; reason: string }> = {
  name: "issue_refund",
  label: "issue a refund",
  description:
    "Refund money to the customer. Irreversible. Refunds over policy limits wait for a billing lead.",
  toolClass: "irreversible",
  input: z.object({
    order_id: orderId,
    amount_usd: z.number().positive().max(100_000),
    reason: z.string().trim().min(3).max(300),
  }),
  async run(ctx, input) {
    const o = await requireOrder(ctx, input.order_id);
    const already = await demo.refundsFor(reads(ctx), input.order_id);
    const replay = already.find((r) => r.idempotency_key === ctx.idempotencyKey);
    if (!replay && already.length > 0)
      throw new ToolInputError(`order ${input.order_id} was already refunded`);
    if (input.amount_usd > Number(o.total_usd))
      throw new ToolInputError(`the refund exceeds the order total of ${o.total_usd} USD`);
    const refund = await demo.insertRefund(tx(ctx), {
      orderId: input.order_id,
      amountUsd: input.amount_usd,
      reason: input.reason,
      key: ctx.idempotencyKey,
    });
    return { refunded_usd: Number(refund.amount_usd), refund_id: refund.id };
  },
};

export const demoTools: readonly ToolDefinition[] = [
  lookupOrder,
  fulfillmentStatus,
  checkStock,
  adjustStock,
  shipOrder,
  returnEligibility,
  createReturnLabel,
  receiveReturn,
  issueRefund,
];
