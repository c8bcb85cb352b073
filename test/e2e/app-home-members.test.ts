import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type Harness, SIGNING_SECRET, startHarness } from "../support/harness.ts";
import { deliverEvent } from "../support/slack-signing.ts";

// Work escalated to a lane that names nobody is its channel's, so App Home asks Slack who is in
// each channel owning open work. Those lists are kept a minute; the first Home after that asks for
// them again, a few at a time (Slack's Tier 4 limit), and a channel Slack rate-limits is left out
// of that Home only, not waited for while the person looks at a blank tab.

let h: Harness;
before(async () => {
  h = await startHarness({ script: () => ({ content: "unused" }) });
});
after(async () => {
  await h.close();
});

let n = 0;
/** An open task escalated to `channel`'s lane, whose members are its owners. */
async function ownedBy(channel: string, title: string) {
  await h.db.db
    .insertInto("tasks")
    .values({
      channel_id: "C0ORDERS",
      thread_ts: `1736000000.${String(++n).padStart(6, "0")}`,
      requester_id: "U0DANA",
      title,
      request_text: title,
      status: "waiting_human",
      owner_kind: "human",
      owner_id: channel,
      handback_stack: "[]",
      facts: "{}",
      cost_usd: 0,
    })
    .execute();
}

/** `user` opens Baton's Home tab; resolves with the view published, once Slack has it. */
async function openHome(user: string): Promise<string> {
  const before = h.slack.callsTo("views.publish").length;
  const opened = { type: "app_home_opened", user, tab: "home" };
  const delivery = await deliverEvent(h.endpoint, SIGNING_SECRET, opened as never);
  assert.equal(delivery.status, 200);
  const published = h.slack
    .callsTo("views.publish")
    .slice(before)
    .find((c) => c.args.user_id === user);
  assert.ok(published, "the Home was published");
  return JSON.stringify(published.args.view);
}

const membersCalls = (channels: readonly string[]) =>
  h.slack.callsTo("conversations.members").filter((c) => channels.includes(String(c.args.channel)));

test("App Home asks Slack for the members of a few channels at a time, each once", async () => {
  const user = "U0MANYLANES";
  const channels = Array.from({ length: 10 }, (_, i) => `C0LANE${i}`);
  for (const channel of channels) {
    h.slack.setChannel({ id: channel, members: [user] });
    await ownedBy(channel, `Escalated to ${channel}`);
  }
  // Slack takes each call, and answers none until the test lets it.
  const held = channels.map(() =>
    h.slack.holdAnswer("conversations.members", (c) => channels.includes(String(c.args.channel))),
  );
  let arrived = 0;
  for (const hold of held) void hold.arrived.then(() => arrived++);
  const home = openHome(user);
  try {
    await h.until("four calls in flight", async () => arrived >= 4);
    // Past the bound nothing more can come, however long this waits; the pause leaves the time to
    // arrive to calls that do not keep to it (one for every channel at once, as Baton used to send).
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(arrived, 4, "4 calls in flight at once, the others waiting for an answer");
  } finally {
    for (const hold of held) hold.release();
  }
  const view = await home;

  for (const channel of channels) assert.match(view, new RegExp(`Escalated to ${channel}`));
  assert.equal(membersCalls(channels).length, channels.length, "each channel asked once");
  await openHome(user);
  assert.equal(membersCalls(channels).length, channels.length, "then kept, not asked again");
});

test("a channel Slack rate-limits is left out of that Home only, and asked again the next time", async () => {
  const user = "U0TWOLANES";
  const channels = ["C0RATEA", "C0RATEB"];
  for (const channel of channels) {
    h.slack.setChannel({ id: channel, members: [user] });
    await ownedBy(channel, `Waiting in ${channel}`);
  }
  // Half a minute: a Home that waited it out would come long after the person opened the tab.
  h.slack.failNext("conversations.members", { error: "ratelimited", retryAfter: 30 });

  const first = await openHome(user);
  const limited = membersCalls(channels).find((c) => c.failed)?.args.channel;
  const other = channels.find((c) => c !== limited);
  assert.ok(limited && other, "one of the two channels was rate-limited");
  assert.match(first, new RegExp(`Waiting in ${other}`), "the rest of the Home shows");
  assert.doesNotMatch(first, new RegExp(`Waiting in ${limited}`), "unknown for now");
  assert.match(first, /Your open tasks \(1\)/);

  const second = await openHome(user);
  for (const channel of channels) assert.match(second, new RegExp(`Waiting in ${channel}`));
  assert.deepEqual(
    membersCalls(channels)
      .slice(2)
      .map((c) => [c.args.channel, c.failed]),
    [[limited, undefined]],
    "the rate-limited channel is asked again; the other is kept",
  );
});
