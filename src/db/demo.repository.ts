import { type Selectable, sql } from "kysely";
import { type Executor, statement, type Tx } from "./database.ts";
import type {
  InventoryTable,
  OrdersTable,
  ShipmentsTable,
  StockAdjustmentsTable,
} from "./schema.ts";

/**
 * The demo business domain's data: orders, stock, shipments, returns, refunds. The tools of
 * flow 1 run their statements at every hop, so those are constant texts (see `statement`).
 */

type Order = Selectable<OrdersTable>;
type Stock = Selectable<InventoryTable>;
type OrderView = Pick<
  Order,
  | "id"
  | "customer_name"
  | "sku"
  | "quantity"
  | "total_usd"
  | "status"
  | "blocked_reason"
  | "placed_at"
  | "delivered_at"
> &
  Pick<Stock, "on_hand" | "physical_count"> & {
    item: Stock["name"];
    // Left joined: no shipment yet gives nulls.
    carrier: Selectable<ShipmentsTable>["carrier"] | null;
    tracking_number: Selectable<ShipmentsTable>["tracking_number"] | null;
    /** Whole days since delivery by the database's clock, as every replica counts them; or null. */
    days_since_delivery: number | null;
  };

const FIND_ORDER = statement<[id: string], OrderView>(`
select orders.id, orders.customer_name, orders.sku, inventory.name as item, orders.quantity,
  orders.total_usd, orders.status, orders.blocked_reason, orders.placed_at, orders.delivered_at,
  inventory.on_hand, inventory.physical_count, shipments.carrier, shipments.tracking_number,
  floor(extract(epoch from now() - orders.delivered_at) / 86400)::int as days_since_delivery
from orders
  join inventory on inventory.sku = orders.sku
  left join shipments on shipments.order_id = orders.id
where orders.id = $1`);

export async function findOrder(db: Executor, id: string) {
  return FIND_ORDER.first(db, id);
}

const FIND_STOCK = statement<[sku: string], Stock>("select * from inventory where sku = $1");

export async function findStock(db: Executor, sku: string) {
  return FIND_STOCK.first(db, sku);
}

// No `on conflict`: a concurrent call with the same key fails on the unique key.
const ADJUST_STOCK = statement<
  [key: string, sku: string, count: number, reason: string],
  Selectable<StockAdjustmentsTable>
>(`
with previous as (
  select * from stock_adjustments where idempotency_key = $1
), stock as (
  select sku, on_hand from inventory
  where sku = $2 and not exists (select id from previous)
  for update
), counted as (
  update inventory set on_hand = $3::integer, updated_at = now()
  from stock where inventory.sku = stock.sku
), adjustment as (
  insert into stock_adjustments (sku, from_count, to_count, reason, idempotency_key)
  select stock.sku, stock.on_hand, $3::integer, $4::text, $1::text from stock
  returning *
)
select * from adjustment
union all
select * from previous`);

/**
 * Sets the count once per idempotency key, in one statement; a replay returns the first adjustment.
 * Nothing when the SKU does not exist. The stock row is locked before its count is read, so
 * `from_count` is the count this adjustment replaced.
 */
export async function adjustStock(
  tx: Tx,
  input: { sku: string; count: number; reason: string; key: string },
) {
  return ADJUST_STOCK.first(tx, input.key, input.sku, input.count, input.reason);
}

// The order and then its stock are locked (in that order, as every writer of both does) before
// they are checked; the stock, the order and the shipment are written only if both checks pass.
// One row whatever happened: the shipment, or what the checks found.
const SHIP_ORDER = statement<
  [key: string, orderId: string, trackingNumber: string],
  { [K in keyof Selectable<ShipmentsTable>]: Selectable<ShipmentsTable>[K] | null } & {
    order_status: Order["status"] | null;
    sku: Order["sku"] | null;
    quantity: Order["quantity"] | null;
    on_hand: Stock["on_hand"] | null;
  }
>(`
with previous as (
  select * from shipments where idempotency_key = $1
), ord as (
  select id, sku, quantity, status from orders
  where id = $2 and not exists (select id from previous)
  for update
), stock as (
  select sku, on_hand from inventory where sku = (select ord.sku from ord)
  for update
), shippable as (
  select ord.id, ord.sku, ord.quantity from ord join stock on stock.sku = ord.sku
  where ord.status not in ('shipped', 'delivered') and stock.on_hand >= ord.quantity
), taken as (
  update inventory set on_hand = inventory.on_hand - shippable.quantity
  from shippable where inventory.sku = shippable.sku
), shipped as (
  update orders set status = 'shipped', blocked_reason = null
  from shippable where orders.id = shippable.id
), shipment as (
  insert into shipments (order_id, carrier, tracking_number, idempotency_key)
  select shippable.id, 'UPS', $3::text, $1::text from shippable
  returning *
), shipments_found as (
  select * from shipment
  union all
  select * from previous
)
select s.id, s.order_id, s.carrier, s.tracking_number, s.idempotency_key, s.created_at,
  ord.status as order_status, ord.sku, ord.quantity, stock.on_hand
from (select 1) as one
  left join shipments_found as s on true
  left join ord on true
  left join stock on true`);

/** Ships an order once per idempotency key, in one statement: a replay returns the first shipment. */
export async function shipOrder(tx: Tx, input: { orderId: string; key: string }) {
  const trackingNumber = `1Z${input.orderId.padStart(6, "0")}${input.key.slice(-6).replace(/\W/g, "0")}`;
  const row = await SHIP_ORDER.first(tx, input.key, input.orderId, trackingNumber);
  if (!row) throw new Error("ship_order's statement returned no row");
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
