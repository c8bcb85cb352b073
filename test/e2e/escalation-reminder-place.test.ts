import assert from "node:assert/strict";
import { test } from "node:test";
import { sql } from "kysely";
import { runMaintenance } from "../../src/runtime/maintenance.ts";
import {
  agentsFileWith,
  CHANNEL,
  type Harness,
  harnessPerTest,
  REQUESTER,
  SIGNING_SECRET,
  SUPPORT_LANE,
} from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import {
  directRefundScript,
  ESCALATION_NOTE,
  escalationScript,
} from "../support/scripts-humans.ts";
import type { SlackCall } from "../support/slack-emulator.ts";
import { deliverEvent, messageEvent } from "../support/slack-signing.ts";

// A reminder reaches the people who decide where they decide. A lane owned by a channel is decided
// by its members: in its channel, paged with <!here>, in the card's thread when the card is there,
// sent to the channel too.
// (deadlines.test.ts: the card in another channel's thread.)

const DM = "D0DMREQUESTER";

const startHarness = harnessPerTest();

async function dm(h: Harness, text: string) {
  const { ts } = h.slack.addMessage({ channel: DM, user: REQUESTER, text });
  const event = messageEvent({ user: REQUESTER, channel: DM, text, ts });
  await deliverEvent(
    h.endpoint,
    SIGNING_SECRET,
    { ...event, channel_type: "im" },
    { eventId: `EvDM${ts}` },
  );
  return ts;
}

/** The escalation (or approval) is overdue; the sweep passes twice, as two replicas would. */
async function overdue(h: Harness, table: "escalations" | "approvals") {
  const row = await h.until(`the ${table} card`, async () => {
    const found = await h.db.db.selectFrom(table).select(["id", "card_ts"]).executeTakeFirst();
    return found?.card_ts ? found : undefined;
  });
  if (table === "escalations")
    await h.db.db
      .updateTable("escalations")
      .set({ respond_by: sql`now() - interval '1 minute'` })
      .execute();
  else
    await h.db.db
      .updateTable("approvals")
      .set({ expires_at: sql`now() - interval '1 minute'` })
      .execute();
  await runMaintenance(h.baton.deps);
  await runMaintenance(h.baton.deps);
  return row;
}

/** The one reminder, once the outbox has sent it. */
async function theReminder(h: Harness, pattern: RegExp): Promise<SlackCall> {
  const sent = () =>
    h.slack.callsTo("chat.postMessage").filter((c) => !c.failed && pattern.test(`${c.args.text}`));
  await h.until("the reminder", async () => sent().length > 0 || undefined);
  await runMaintenance(h.baton.deps);
  assert.equal(sent().length, 1, "one reminder");
  return sent()[0] as SlackCall;
}

const placeOf = (c: SlackCall) => ({ channel: c.args.channel, thread_ts: c.args.thread_ts });
const whereAndWhat = (c: SlackCall) =>
  `${c.args.channel} ${c.args.thread_ts ?? "(no thread)"}: ${c.args.text}`;

test("a DM's escalation to a channel's lane: the reminder pages the channel in the card's thread", async () => {
  const h = await startHarness({
    script: scriptByAgent({
      "customer-service": [
        { toolCalls: [{ name: "escalate_to_human", arguments: ESCALATION_NOTE }] },
      ],
    }),
  });
  await dm(h, "the lamp from order 1077 caught fire, I want compensation");
  const card = await overdue(h, "escalations");

  const reminder = await theReminder(h, /Reminder/);
  assert.deepEqual(
    placeOf(reminder),
    { channel: "C0SUPPORT", thread_ts: card.card_ts },
    `not in the card's thread: ${whereAndWhat(reminder)}`,
  );
  assert.match(String(reminder.args.text), /^<!here> ⏰/);
  assert.equal(
    String(reminder.args.reply_broadcast),
    "true",
    "the channel sees the page, not only the thread",
  );
});

test("a lane the file leaves out is the task's channel's: the reminder pages it in the thread", async () => {
  const agentsFile = agentsFileWith([SUPPORT_LANE, ""]);
  const h = await startHarness({ script: scriptByAgent(escalationScript()), agentsFile });
  const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
  await overdue(h, "escalations");

  const reminder = await theReminder(h, /Reminder/);
  assert.deepEqual(placeOf(reminder), { channel: CHANNEL, thread_ts: ts }, whereAndWhat(reminder));
  assert.match(String(reminder.args.text), /^<!here> ⏰/, whereAndWhat(reminder));
  assert.equal(
    String(reminder.args.reply_broadcast),
    "true",
    "the channel sees the page, not only the thread",
  );
});

test("a DM's approval handed to its fallback: the fallback is paged where the card is", async () => {
  const h = await startHarness({ script: scriptByAgent(directRefundScript()) });
  await dm(h, "billing: please refund order 1077, the lamp came back");
  await overdue(h, "approvals");

  const reminder = await theReminder(h, /in time/);
  assert.equal(reminder.args.channel, "C0OPS", whereAndWhat(reminder));
  assert.match(String(reminder.args.text), /^<@U0OPSMANAGER> ⏰/);
});
