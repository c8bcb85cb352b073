import { sql } from "kysely";
import type { Executor, Tx } from "./database.ts";

/** The demo business domain's data: orders, stock, shipments, returns, refunds. */

export async function findOrder(db: Executor, id: string) {
  return db
    .selectFrom("orders")
    .innerJoin("inventory", "inventory.sku", "orders.sku")
    .leftJoin("shipments", "shipments.order_id", "orders.id")
    .select([
      "orders.id",
      "orders.customer_name",
      "orders.sku",
      "inventory.name as item",
      "orders.quantity",
      "orders.total_usd",
      "orders.status",
      "orders.blocked_reason",
      "orders.placed_at",
      "orders.delivered_at",
      "inventory.on_hand",
      "inventory.physical_count",
      "shipments.carrier",
      "shipments.tracking_number",
    ])
    .where("orders.id", "=", id)
    .executeTakeFirst();
}

export async function findStock(db: Executor, sku: string) {
  return db.selectFrom("inventory").selectAll().where("sku", "=", sku).executeTakeFirst();
}

/** Sets the count once per idempotency key; a replay returns the first adjustment. */
export async function adjustStock(
  tx: Tx,
  input: { sku: string; count: number; reason: string; key: string },
) {
  const previous = await tx
    .selectFrom("stock_adjustments")
    .selectAll()
    .where("idempotency_key", "=", input.key)
    .executeTakeFirst();
  if (previous) return previous;
  const stock = await tx
    .selectFrom("inventory")
    .select("on_hand")
    .where("sku", "=", input.sku)
    .forUpdate()
    .executeTakeFirstOrThrow();
  await tx
    .updateTable("inventory")
    .set({ on_hand: input.count, updated_at: sql`now()` })
    .where("sku", "=", input.sku)
    .execute();
  return tx
    .insertInto("stock_adjustments")
    .values({
      sku: input.sku,
      from_count: stock.on_hand,
      to_count: input.count,
      reason: input.reason,
      idempotency_key: input.key,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function shipOrder(tx: Tx, input: { orderId: string; key: string }) {
  const previous = await tx
    .selectFrom("shipments")
    .selectAll()
    .where("idempotency_key", "=", input.key)
    .executeTakeFirst();
  if (previous) return { shipment: previous, error: undefined };
  const order = await tx
    .selectFrom("orders")
    .selectAll()
    .where("id", "=", input.orderId)
    .forUpdate()
    .executeTakeFirst();
  if (!order) return { shipment: undefined, error: `order ${input.orderId} does not exist` };
  if (order.status === "shipped" || order.status === "delivered")
    return { shipment: undefined, error: `order ${order.id} is already ${order.status}` };
  const stock = await tx
    .selectFrom("inventory")
    .selectAll()
    .where("sku", "=", order.sku)
    .forUpdate()
    .executeTakeFirstOrThrow();
  if (stock.on_hand < order.quantity) {
    return {
      shipment: undefined,
      error: `not enough stock of ${order.sku}: ${stock.on_hand} on hand, ${order.quantity} needed`,
    };
  }
  await tx
    .updateTable("inventory")
    .set((eb) => ({ on_hand: eb("on_hand", "-", order.quantity) }))
    .where("sku", "=", order.sku)
    .execute();
  await tx
    .updateTable("orders")
    .set({ status: "shipped", blocked_reason: null })
    .where("id", "=", order.id)
    .execute();
  const shipment = await tx
    .insertInto("shipments")
    .values({
      order_id: order.id,
      carrier: "UPS",
      tracking_number: `1Z${order.id.padStart(6, "0")}${input.key.slice(-6).replace(/\W/g, "0")}`,
      idempotency_key: input.key,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  return { shipment, error: undefined };
}

export async function findReturn(db: Executor, orderId: string) {
  return db.selectFrom("returns").selectAll().where("order_id", "=", orderId).executeTakeFirst();
}

export async function createReturn(tx: Tx, orderId: string, labelCode: string) {
  await tx
    .insertInto("returns")
    .values({ order_id: orderId, label_code: labelCode, status: "label_issued" })
    .onConflict((oc) => oc.column("order_id").doNothing())
    .execute();
  return tx
    .selectFrom("returns")
    .selectAll()
    .where("order_id", "=", orderId)
    .executeTakeFirstOrThrow();
}

export async function receiveReturn(tx: Tx, orderId: string) {
  return tx
    .updateTable("returns")
    .set({ status: "received", received_at: sql`coalesce(received_at, now())` })
    .where("order_id", "=", orderId)
    .returningAll()
    .executeTakeFirst();
}

export async function refundsFor(db: Executor, orderId: string) {
  return db.selectFrom("refunds").selectAll().where("order_id", "=", orderId).execute();
}

export async function insertRefund(
  tx: Tx,
  input: { orderId: string; amountUsd: number; reason: string; key: string },
) {
  await tx
    .insertInto("refunds")
    .values({
      order_id: input.orderId,
      amount_usd: input.amountUsd,
      reason: input.reason,
      idempotency_key: input.key,
    })
    .onConflict((oc) => oc.column("idempotency_key").doNothing())
    .execute();
  await tx
    .updateTable("orders")
    .set({ status: "refunded" })
    .where("id", "=", input.orderId)
    .execute();
  return tx
    .selectFrom("refunds")
    .selectAll()
    .where("idempotency_key", "=", input.key)
    .executeTakeFirstOrThrow();
}
