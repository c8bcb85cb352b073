import assert from "node:assert/strict";
import { after, test } from "node:test";
import { type Harness, startHarness } from "../support/harness.ts";

let h: Harness | undefined;
after(async () => {
  await h?.close();
});

test("a failed look-up of the bot's own id fails that event only: Slack's retry is accepted", async () => {
  const harness = await startHarness({ script: () => ({ content: "On its way." }) });
  h = harness;
  harness.slack.failNext("auth.test", { error: "internal_error" });
  const first = await harness.mention("where is order 1042?", { eventId: "EvBOTID1" });
  assert.equal(first.status, 500, "the event failed, so Slack delivers it again");
  const retry = await harness.mention("where is order 1042?", {
    eventId: "EvBOTID1",
    retryNum: 1,
    ts: first.ts,
  });
  assert.equal(retry.status, 200);
  const later = await harness.mention("and order 1077?", { eventId: "EvBOTID2" });
  assert.equal(later.status, 200);
  const tasks = await harness.db.db.selectFrom("tasks").select("thread_ts").execute();
  assert.deepEqual(tasks.map((t) => t.thread_ts).sort(), [first.ts, later.ts].sort());
});
