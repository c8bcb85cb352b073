import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import { type Harness, REQUESTER, SIGNING_SECRET, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { ESCALATION_NOTE, taskOfThread } from "../support/scripts-humans.ts";
import { deliverEvent, messageEvent } from "../support/slack-signing.ts";
import { runBaton } from "../support/slash-command.ts";

const DM = "D0DMREQUESTER";
const DECISIONS = "C0OPS";
let current: Harness | undefined;
afterEach(async () => {
  await current?.close();
  current = undefined;
});

async function dm(h: Harness, text: string, threadTs?: string) {
  const { ts } = h.slack.addMessage({
    channel: DM,
    user: REQUESTER,
    text,
    ...(threadTs && { threadTs }),
  });
  const event = messageEvent({
    user: REQUESTER,
    channel: DM,
    text,
    ts,
    ...(threadTs && { threadTs }),
  });
  await deliverEvent(
    h.endpoint,
    SIGNING_SECRET,
    { ...event, channel_type: "im" },
    { eventId: `EvDM${ts}` },
  );
  return ts;
}

// A DM's task, escalated to the operations lane (U0OPSMANAGER), taken over from the card in #ops and
// closed with /baton done. The requester replies in the DM: the task is reopened for the manager,
// and the notice paging them went into the requester's DM, which the manager cannot see.
test("a DM task reopened by the requester's reply: the holder is paged where they can see it", async () => {
  const note = { ...ESCALATION_NOTE, lane: "operations" };
  const h = await startHarness({
    script: scriptByAgent({
      "customer-service": [{ toolCalls: [{ name: "escalate_to_human", arguments: note }] }],
    }),
  });
  current = h;
  const ts = await dm(h, "the lamp from order 1077 caught fire, I want compensation");
  const escalation = await h.until("the escalation card", async () => {
    const row = await h.db.db.selectFrom("escalations").selectAll().executeTakeFirst();
    return row?.card_ts ? row : undefined;
  });
  await h.clickCard("U0OPSMANAGER", ESCALATION_TAKE_OVER, escalation, escalation.card_ts ?? "");
  await h.until(
    "the manager holds it",
    async () => (await taskOfThread(h.db.db, ts))?.owner_id === "U0OPSMANAGER" || undefined,
  );
  const task = await taskOfThread(h.db.db, ts);
  const closed = await runBaton(h, `done ${task?.id}`, {
    user: "U0OPSMANAGER",
    channel: DECISIONS,
  });
  assert.match(closed.text, /is closed/);
  await dm(h, "it happened again, the replacement is smoking too", ts);
  const notice = await h.until("the reopen notice", async () =>
    h.slack.callsTo("chat.postMessage").find((c) => /open again/.test(String(c.args.text))),
  );
  const said = `${String(notice.args.channel)}: ${String(notice.args.text)}`;
  assert.notEqual(
    notice.args.channel,
    DM,
    `the manager is paged in the requester's DM, which they cannot see: ${said}`,
  );
});
