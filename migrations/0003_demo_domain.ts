import { type Kysely, sql } from "kysely";

/**
 * The demo business domain (orders, shipments, inventory, returns, refunds) with seed data,
 * so flows 1 and 2 run out of the box. Order 1042 is stuck in fulfillment because the
 * stock count of its item is wrong; order 1077 is delivered and returnable for 149 USD.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("inventory")
    .addColumn("sku", "text", (c) => c.primaryKey())
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("on_hand", "integer", (c) => c.notNull())
    .addColumn("physical_count", "integer", (c) => c.notNull())
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createTable("orders")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("customer_name", "text", (c) => c.notNull())
    .addColumn("sku", "text", (c) => c.notNull().references("inventory.sku"))
    .addColumn("quantity", "integer", (c) => c.notNull())
    .addColumn("total_usd", "numeric(10, 2)", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("blocked_reason", "text")
    .addColumn("placed_at", "timestamptz", (c) => c.notNull())
    .addColumn("delivered_at", "timestamptz")
    .execute();
  await db.schema
    .createTable("stock_adjustments")
    .addColumn("id", "bigserial", (c) => c.primaryKey())
    .addColumn("sku", "text", (c) => c.notNull().references("inventory.sku"))
    .addColumn("from_count", "integer", (c) => c.notNull())
    .addColumn("to_count", "integer", (c) => c.notNull())
    .addColumn("reason", "text", (c) => c.notNull())
    .addColumn("idempotency_key", "text", (c) => c.notNull().unique())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createTable("shipments")
    .addColumn("id", "bigserial", (c) => c.primaryKey())
    .addColumn("order_id", "text", (c) => c.notNull().references("orders.id"))
    .addColumn("carrier", "text", (c) => c.notNull())
    .addColumn("tracking_number", "text", (c) => c.notNull())
    .addColumn("idempotency_key", "text", (c) => c.notNull().unique())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createTable("returns")
    .addColumn("order_id", "text", (c) => c.primaryKey().references("orders.id"))
    .addColumn("label_code", "text", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("received_at", "timestamptz")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createTable("refunds")
    .addColumn("id", "bigserial", (c) => c.primaryKey())
    .addColumn("order_id", "text", (c) => c.notNull().references("orders.id"))
    .addColumn("amount_usd", "numeric(10, 2)", (c) => c.notNull())
    .addColumn("reason", "text", (c) => c.notNull())
    .addColumn("idempotency_key", "text", (c) => c.notNull().unique())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  await db
    .insertInto("inventory")
    .values([
      { sku: "LAMP-OAK", name: "Oak desk lamp", on_hand: 0, physical_count: 14 },
      { sku: "MUG-BLUE", name: "Blue stoneware mug", on_hand: 120, physical_count: 120 },
      { sku: "CHAIR-ERGO", name: "Ergonomic chair", on_hand: 8, physical_count: 8 },
    ])
    .execute();
  await db
    .insertInto("orders")
    .values([
      {
        id: "1042",
        customer_name: "Dana Reyes",
        sku: "LAMP-OAK",
        quantity: 1,
        total_usd: 89,
        status: "stuck_in_fulfillment",
        blocked_reason: "pick failed: system shows 0 on hand",
        placed_at: sql`now() - interval '5 days'`,
      },
      {
        id: "1077",
        customer_name: "Sam Okafor",
        sku: "CHAIR-ERGO",
        quantity: 1,
        total_usd: 149,
        status: "delivered",
        placed_at: sql`now() - interval '12 days'`,
        delivered_at: sql`now() - interval '6 days'`,
      },
      {
        id: "1090",
        customer_name: "Priya Shah",
        sku: "MUG-BLUE",
        quantity: 2,
        total_usd: 36,
        status: "delivered",
        placed_at: sql`now() - interval '9 days'`,
        delivered_at: sql`now() - interval '4 days'`,
      },
    ])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of [
    "refunds",
    "returns",
    "shipments",
    "stock_adjustments",
    "orders",
    "inventory",
  ]) {
    await db.schema.dropTable(table).ifExists().execute();
  }
}
