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

/**
 * Sets the count once per idempotency key, in one statement; a replay returns the first adjustment.
 * Nothing when the SKU does not exist. The stock row is locked before its count is read, so
 * `from_count` is the count this adjustment replaced.
 */
export async function adjustStock(
  tx: Tx,
  input: { sku: string; count: number; reason: string; key: string },
) {
  return (
    tx
      .with("previous", (db) =>
        db.selectFrom("stock_adjustments").selectAll().where("idempotency_key", "=", input.key),
      )
      .with("stock", (db) =>
        db
          .selectFrom("inventory")
          .select(["sku", "on_hand"])
          .where("sku", "=", input.sku)
          .where(({ not, exists, selectFrom }) => not(exists(selectFrom("previous").select("id"))))
          .forUpdate(),
      )
      .with("counted", (db) =>
        db
          .updateTable("inventory")
          .set({ on_hand: input.count, updated_at: sql`now()` })
          .from("stock")
          .whereRef("inventory.sku", "=", "stock.sku"),
      )
      // No `on conflict`: a concurrent call with the same key fails on the unique key, as before.
      .with("adjustment", (db) =>
        db
          .insertInto("stock_adjustments")
          .columns(["sku", "from_count", "to_count", "reason", "idempotency_key"])
          .expression((eb) =>
            eb
              .selectFrom("stock")
              .select([
                "stock.sku",
                "stock.on_hand",
                sql<number>`${input.count}::integer`.as("to_count"),
                sql<string>`${input.reason}::text`.as("reason"),
                sql<string>`${input.key}::text`.as("idempotency_key"),
              ]),
          )
          .returningAll(),
      )
      .selectFrom("adjustment")
      .selectAll()
      .unionAll((eb) => eb.selectFrom("previous").selectAll())
      .executeTakeFirst()
  );
}

/**
 * Ships an order once per idempotency key, in one statement: a replay returns the first shipment.
 * The order and then its stock are locked (in that order, as every writer of both does) before
 * they are checked; the stock, the order and the shipment are written only if both checks pass.
 */
export async function shipOrder(tx: Tx, input: { orderId: string; key: string }) {
  const trackingNumber = `1Z${input.orderId.padStart(6, "0")}${input.key.slice(-6).replace(/\W/g, "0")}`;
  const row = await tx
    .with("previous", (db) =>
      db.selectFrom("shipments").selectAll().where("idempotency_key", "=", input.key),
    )
    .with("ord", (db) =>
      db
        .selectFrom("orders")
        .select(["id", "sku", "quantity", "status"])
        .where("id", "=", input.orderId)
        .where(({ not, exists, selectFrom }) => not(exists(selectFrom("previous").select("id"))))
        .forUpdate(),
    )
    .with("stock", (db) =>
      db
        .selectFrom("inventory")
        .select(["sku", "on_hand"])
        .where("sku", "=", (eb) => eb.selectFrom("ord").select("ord.sku"))
        .forUpdate(),
    )
    .with("shippable", (db) =>
      db
        .selectFrom("ord")
        .innerJoin("stock", "stock.sku", "ord.sku")
        .select(["ord.id", "ord.sku", "ord.quantity"])
        .where("ord.status", "not in", ["shipped", "delivered"])
        .whereRef("stock.on_hand", ">=", "ord.quantity"),
    )
    .with("taken", (db) =>
      db
        .updateTable("inventory")
        .set({ on_hand: sql<number>`inventory.on_hand - shippable.quantity` })
        .from("shippable")
        .whereRef("inventory.sku", "=", "shippable.sku"),
    )
    .with("shipped", (db) =>
      db
        .updateTable("orders")
        .set({ status: "shipped", blocked_reason: null })
        .from("shippable")
        .whereRef("orders.id", "=", "shippable.id"),
    )
    .with("shipment", (db) =>
      db
        .insertInto("shipments")
        .columns(["order_id", "carrier", "tracking_number", "idempotency_key"])
        .expression((eb) =>
          eb
            .selectFrom("shippable")
            .select([
              "shippable.id",
              sql<string>`'UPS'`.as("carrier"),
              sql<string>`${trackingNumber}::text`.as("tracking_number"),
              sql<string>`${input.key}::text`.as("idempotency_key"),
            ]),
        )
        .returningAll(),
    )
    .with("shipments_found", (db) =>
      db
        .selectFrom("shipment")
        .selectAll()
        .unionAll((eb) => eb.selectFrom("previous").selectAll()),
    )
    // One row whatever happened: the shipment, or what the checks found.
    .selectFrom(sql<{ one: number }>`(select 1)`.as("one"))
    .leftJoin("shipments_found as s", (join) => join.onTrue())
    .leftJoin("ord", (join) => join.onTrue())
    .leftJoin("stock", (join) => join.onTrue())
    .select([
      "s.id",
      "s.order_id",
      "s.carrier",
      "s.tracking_number",
      "s.idempotency_key",
      "s.created_at",
      "ord.status as order_status",
      "ord.sku",
      "ord.quantity",
      "stock.on_hand",
    ])
    .executeTakeFirstOrThrow();
  const { order_status: status, sku, quantity, on_hand: onHand, ...shipment } = row;
  if (shipment.id !== null) return { shipment, error: undefined };
  if (status === null)
    return { shipment: undefined, error: `order ${input.orderId} does not exist` };
  if (status === "shipped" || status === "delivered")
    return { shipment: undefined, error: `order ${input.orderId} is already ${status}` };
  return {
    shipment: undefined,
    error: `not enough stock of ${sku}: ${onHand} on hand, ${quantity} needed`,
  };
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
