import assert from "node:assert/strict";
import { after, test } from "node:test";
import { type Harness, startHarness } from "../support/harness.ts";
import { flowOneByState, leaseLeftMs, playFlowOneOnce } from "../support/scripts.ts";

const LEASE_MS = 600;

let h: Harness | undefined;
after(async () => {
  await h?.close();
});

test("a model slower than the lease: its run renews the lease while it waits, and the flow ends once", async () => {
  let slowed = false;
  let leaseLeft: number | undefined;
  const harness: Harness = await startHarness({
    leaseMs: LEASE_MS,
    script: flowOneByState(async (agent) => {
      // Customer Service's first answer takes three leases: the task's job comes due meanwhile (it
      // is due when the lease would run out), and any replica could take the task over.
      if (agent === "customer-service" && !slowed) {
        slowed = true;
        await new Promise((resolve) => setTimeout(resolve, LEASE_MS * 2.5));
        leaseLeft = await leaseLeftMs(harness.db.db);
        await new Promise((resolve) => setTimeout(resolve, LEASE_MS * 0.5));
      }
    }),
  });
  h = harness;
  await playFlowOneOnce(harness);
  assert.ok(
    leaseLeft !== undefined && leaseLeft > 0,
    `the lease was renewed while the model was slow (${leaseLeft} ms left, 2.5 leases in)`,
  );
  assert.equal(
    harness.model.requestsFor("customer-service").length,
    3,
    "Customer Service was asked three times (lookup, transfer, answer), its slow first turn once",
  );
});
