import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import { CHANNEL, type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { escalationScript, taskOfThread } from "../support/scripts-humans.ts";
import { blockActionsPayload } from "../support/slack-signing.ts";

let current: Harness | undefined;
afterEach(async () => {
  await current?.close();
  current = undefined;
});

// agents.yml: the support lane is owned by the channel C0SUPPORT. The card, though, is posted in the
// task's own thread (C0ORDERS). A person in C0ORDERS who is not in C0SUPPORT (nor requester, nor
// fallback) clicks "Take it over": the checker lets anyone take a channel-owned escalation.
test("a person outside the lane's channel cannot take over a channel-owned escalation", async () => {
  const h = await startHarness({ script: scriptByAgent(escalationScript()) });
  current = h;
  const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await h.until("the escalation card", async () => {
    const row = await h.db.db.selectFrom("escalations").selectAll().executeTakeFirst();
    return row?.card_ts ? row : undefined;
  });
  assert.deepEqual(escalation.owner, { kind: "channel", id: "C0SUPPORT" });
  await h.click(
    blockActionsPayload({
      userId: "U0BYSTANDER",
      actionId: ESCALATION_TAKE_OVER,
      value: escalation.id,
      channel: CHANNEL, // clicked in the orders channel, where the card is
      messageTs: escalation.card_ts ?? "",
      threadTs: ts,
    }),
  );
  await new Promise((r) => setTimeout(r, 1000));
  const task = await taskOfThread(h.db.db, ts);
  const row = await h.db.db
    .selectFrom("escalations")
    .selectAll()
    .where("id", "=", escalation.id)
    .executeTakeFirstOrThrow();
  assert.equal(
    row.status,
    "open",
    `a bystander in ${CHANNEL} took over C0SUPPORT's escalation: status=${row.status} by ${row.decided_by}, task owner now ${task?.owner_id}`,
  );
});
