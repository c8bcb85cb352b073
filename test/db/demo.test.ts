import assert from "node:assert/strict";
import { test } from "node:test";
import { adjustStock, findOrder, findStock, shipOrder } from "../../src/db/demo.repository.ts";
import { databaseForFile } from "../support/db.ts";

const t = databaseForFile();

const inTx = <T>(run: (tx: Parameters<typeof adjustStock>[0]) => Promise<T>) =>
  t.db.transaction().execute(run);

async function stockOf(sku: string) {
  return (await findStock(t.db, sku))?.on_hand;
}

test("adjust_stock sets the count once per key and a replay returns the first adjustment", async () => {
  const first = await inTx((tx) =>
    adjustStock(tx, { sku: "MUG-BLUE", count: 117, reason: "cycle count", key: "adj-1" }),
  );
  assert.ok(first);
  assert.equal(first.from_count, 120);
  assert.equal(first.to_count, 117);
  assert.equal(first.sku, "MUG-BLUE");
  assert.equal(first.idempotency_key, "adj-1");
  assert.equal(await stockOf("MUG-BLUE"), 117);

  // Someone changes the count; the replay of the first call neither writes nor reads it.
  await t.db.updateTable("inventory").set({ on_hand: 50 }).where("sku", "=", "MUG-BLUE").execute();
  const replay = await inTx((tx) =>
    adjustStock(tx, { sku: "MUG-BLUE", count: 999, reason: "again", key: "adj-1" }),
  );
  assert.deepEqual(replay, first);
  assert.equal(await stockOf("MUG-BLUE"), 50);

  const second = await inTx((tx) =>
    adjustStock(tx, { sku: "MUG-BLUE", count: 52, reason: "recount", key: "adj-2" }),
  );
  assert.equal(second?.from_count, 50);
  assert.equal(second?.to_count, 52);
  assert.equal(await stockOf("MUG-BLUE"), 52);
  const rows = await t.db.selectFrom("stock_adjustments").select("idempotency_key").execute();
  assert.deepEqual(rows.map((r) => r.idempotency_key).sort(), ["adj-1", "adj-2"]);
});

test("adjust_stock of an unknown SKU writes nothing and returns nothing", async () => {
  const none = await inTx((tx) =>
    adjustStock(tx, { sku: "NO-SUCH", count: 1, reason: "typo", key: "adj-missing" }),
  );
  assert.equal(none, undefined);
  const row = await t.db
    .selectFrom("stock_adjustments")
    .select("id")
    .where("idempotency_key", "=", "adj-missing")
    .executeTakeFirst();
  assert.equal(row, undefined);
});

test("ship_order checks the order and its stock before it writes anything", async () => {
  const missing = await inTx((tx) => shipOrder(tx, { orderId: "9999", key: "ship-missing" }));
  assert.deepEqual(missing, { shipment: undefined, error: "order 9999 does not exist" });

  const delivered = await inTx((tx) => shipOrder(tx, { orderId: "1077", key: "ship-delivered" }));
  assert.deepEqual(delivered, { shipment: undefined, error: "order 1077 is already delivered" });

  const short = await inTx((tx) => shipOrder(tx, { orderId: "1042", key: "ship-short" }));
  assert.deepEqual(short, {
    shipment: undefined,
    error: "not enough stock of LAMP-OAK: 0 on hand, 1 needed",
  });
  assert.equal((await findOrder(t.db, "1042"))?.status, "stuck_in_fulfillment");
  assert.equal(await t.db.selectFrom("shipments").select("id").executeTakeFirst(), undefined);
});

test("ship_order ships once per key and a replay returns the first shipment", async () => {
  await t.db.updateTable("inventory").set({ on_hand: 14 }).where("sku", "=", "LAMP-OAK").execute();
  const first = await inTx((tx) => shipOrder(tx, { orderId: "1042", key: "turn-7:call_ab-12" }));
  assert.equal(first.error, undefined);
  assert.ok(first.shipment);
  assert.equal(first.shipment.order_id, "1042");
  assert.equal(first.shipment.carrier, "UPS");
  assert.equal(first.shipment.tracking_number, "1Z001042_ab012");
  assert.equal(first.shipment.idempotency_key, "turn-7:call_ab-12");
  assert.ok(first.shipment.created_at instanceof Date);
  const order = await findOrder(t.db, "1042");
  assert.equal(order?.status, "shipped");
  assert.equal(order?.blocked_reason, null);
  assert.equal(await stockOf("LAMP-OAK"), 13);

  const replay = await inTx((tx) => shipOrder(tx, { orderId: "1042", key: "turn-7:call_ab-12" }));
  assert.deepEqual(replay, first);
  assert.equal(await stockOf("LAMP-OAK"), 13);

  // A new call for the shipped order is refused by the status check, not by the key.
  const again = await inTx((tx) => shipOrder(tx, { orderId: "1042", key: "another-call" }));
  assert.deepEqual(again, { shipment: undefined, error: "order 1042 is already shipped" });
  const shipments = await t.db.selectFrom("shipments").select("id").execute();
  assert.equal(shipments.length, 1);
});
