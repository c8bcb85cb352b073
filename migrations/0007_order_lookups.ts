import { type Kysely, sql } from "kysely";

/**
 * The demo's tools find an order's shipment (`lookup_order`, `get_fulfillment_status`) and refunds
 * (`check_return_eligibility`, `issue_refund`) by order id. Without these, each call scanned every
 * shipment or refund ever made.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index shipments_order_idx on shipments (order_id)`.execute(db);
  await sql`create index refunds_order_idx on refunds (order_id)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const name of ["refunds_order_idx", "shipments_order_idx"])
    await db.schema.dropIndex(name).ifExists().execute();
}
