import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { webApi } from "@slack/bolt";
import type { DigestInput } from "../src/core/digest.ts";
import type { ChatIntent, ChatSurface } from "../src/core/ports.ts";
import { parseTaskRef } from "../src/db/reports.repository.ts";
import { RetryAfterError, TransientError } from "../src/errors.ts";
import { createLogger } from "../src/log.ts";
import {
  createSlackChatSurface,
  messageLink,
  noticeText,
  SlackDeliveryError,
} from "../src/slack/chat-surface.ts";
import { type SlackEmulator, startSlackEmulator } from "./support/slack-emulator.ts";
import { assertWithinSlackLimits } from "./support/slack-limits.ts";

// Bolt re-exports @slack/web-api, so the test needs no direct dependency on it.
const { WebClient } = webApi;

const CHANNEL = "C0SUPPORT";
const CS = { name: "Customer Service", icon: ":robot_face:" };
const BILLING = { name: "Billing", icon: "https://example.com/billing.png" };

/** A digest as the runtime queues it: plain data, dates as ISO strings. */
const DIGEST: DigestInput = {
  audience: "channel",
  asOf: "2025-01-06T09:00:00.000Z",
  staleAfterMs: 86_400_000,
  approvalStaleAfterMs: 14_400_000,
  staleTasks: Array.from({ length: 30 }, (_, i) => ({
    title: `Refund order ${1000 + i} <!channel>`,
    owner: { kind: "human" as const, id: "U0ALICE" },
    lastActivityAt: "2025-01-05T08:00:00.000Z",
    link: "https://slack.com/app_redirect?channel=C0SUPPORT&message_ts=1.000001",
  })),
  staleApprovals: [
    {
      toolName: "refund",
      agentName: "Billing",
      taskTitle: "Refund order 1042",
      approverIds: ["U0BOB", "S0BILLING"],
      requestedAt: "2025-01-06T03:00:00.000Z",
    },
  ],
  failedTasks: [
    {
      title: "Order 7",
      reason: "model refused",
      failedAt: "2025-01-06T07:00:00.000Z",
    },
  ],
};

const outboxMeta = (id: string) => ({
  event_type: "baton_outbox",
  event_payload: { outbox_id: id },
});

test("a thread link is the thread's permalink on the workspace, and /baton reads it back", () => {
  const link = messageLink("https://acme.slack.com/", "C0SUPPORT", "1700000500.000200");
  assert.equal(link, "https://acme.slack.com/archives/C0SUPPORT/p1700000500000200");
  assert.deepEqual(parseTaskRef(link), {
    kind: "thread",
    channel: "C0SUPPORT",
    threadTs: "1700000500.000200",
  });
  // Without the workspace's URL (auth.test gave none), app_redirect opens the channel at least.
  assert.equal(
    messageLink(undefined, "C0SUPPORT", "1700000500.000200"),
    "https://slack.com/app_redirect?channel=C0SUPPORT",
  );
});

describe("Slack chat surface against the Web API emulator", () => {
  let emulator: SlackEmulator;
  let client: webApi.WebClient;
  let chat: ChatSurface;
  let clock = 0;
  let root: string;

  before(async () => {
    emulator = await startSlackEmulator({
      usergroups: [{ id: "S0BILLING", handle: "billing-leads", users: ["U0ALICE", "U0BOB"] }],
      channels: [
        {
          id: "C0BIG",
          members: Array.from({ length: 2_500 }, (_, i) => `U${String(i).padStart(6, "0")}`),
        },
      ],
    });
    client = new WebClient("xoxb-test", {
      slackApiUrl: emulator.url,
      retryConfig: { retries: 0 },
      logLevel: webApi.LogLevel.ERROR,
    });
    chat = createSlackChatSurface(client, {
      log: createLogger({ level: "silent" }),
      now: () => clock,
    });
  });
  after(() => emulator.close());
  beforeEach(() => {
    emulator.reset();
    root = emulator.addMessage({ channel: CHANNEL, user: "U0ALICE", text: "where is 1042?" }).ts;
  });

  const lastPost = () => {
    const posts = emulator.callsTo("chat.postMessage");
    const call = posts[posts.length - 1];
    assert.ok(call, "no chat.postMessage");
    return call.args;
  };
  const blockText = (blocks: unknown) => JSON.stringify(blocks);

  test("agent_reply posts in the thread as the persona, with the outbox id, escaped", async () => {
    const intent: ChatIntent = {
      kind: "agent_reply",
      channel: CHANNEL,
      threadTs: root,
      persona: CS,
      text: "Order 1042 ships today <!channel> @here <https://evil.example|click>",
    };
    const sent = await chat.deliver(intent, "out-1");

    const args = lastPost();
    assert.equal(args.thread_ts, root);
    assert.equal(args.username, "Customer Service");
    assert.equal(args.icon_emoji, ":robot_face:");
    assert.equal(args.icon_url, undefined);
    assert.deepEqual(args.metadata, outboxMeta("out-1"));
    const [stored] = emulator.messagesIn(CHANNEL, root).filter((m) => m.ts === sent.ts);
    assert.ok(stored);
    assert.equal(sent.channel, CHANNEL);
    const rendered = `${stored.text} ${blockText(stored.blocks)}`;
    assert.ok(!rendered.includes("<!channel>"), rendered);
    assert.ok(!rendered.includes("<https://"), rendered);
    assert.ok(rendered.includes("&lt;!channel&gt;"), rendered);
  });

  test("handoff_card posts the card with an image icon", async () => {
    await chat.deliver(
      {
        kind: "handoff_card",
        channel: CHANNEL,
        threadTs: root,
        persona: BILLING,
        fromName: "Customer Service",
        toName: "Billing",
        handoff: {
          kind: "transfer",
          note: {
            summary: "Refund for 1042",
            done: [],
            needed: "Issue the refund",
            facts: { order: "1042" },
            unknowns: [],
            urgency: "high",
          },
        },
      },
      "out-2",
    );
    const args = lastPost();
    assert.equal(args.icon_url, BILLING.icon);
    assert.equal(args.icon_emoji, undefined);
    assert.equal(args.username, "Billing");
    assert.equal(args.thread_ts, root);
    assert.deepEqual(args.metadata, outboxMeta("out-2"));
    assert.match(blockText(args.blocks), /Refund for 1042/);
  });

  test("approval_card posts, then an update edits the same message in place", async () => {
    const approval = {
      approvalId: "ap-1",
      agentName: "Billing",
      toolName: "refund",
      args: { order: "1042", amount: 30 },
      requesterId: "U0ALICE",
      approvers: { users: [], groups: ["S0BILLING"] },
      expiresAt: "2030-01-01T12:00:00.000Z",
      state: { status: "pending" as const },
    };
    const base = {
      kind: "approval_card" as const,
      channel: CHANNEL,
      threadTs: root,
      persona: BILLING,
    };
    const posted = await chat.deliver({ ...base, approval }, "out-3");
    assert.ok(posted.ts);
    assert.match(blockText(lastPost().blocks), /approval_approve/);
    assert.match(blockText(lastPost().blocks), /<!date\^1893499200\^/);

    const decided = { status: "approved" as const, by: "U0BOB", at: "2030-01-01T11:00:00.000Z" };
    const updated = await chat.deliver(
      { ...base, updateTs: posted.ts, approval: { ...approval, state: decided } },
      "out-4",
    );
    assert.deepEqual(updated, { ts: posted.ts, channel: CHANNEL });
    assert.equal(emulator.callsTo("chat.postMessage").length, 1);
    const [update] = emulator.callsTo("chat.update");
    assert.equal(update?.args.ts, posted.ts);
    assert.equal(update?.args.channel, CHANNEL);
    const stored = emulator.messagesIn(CHANNEL, root).find((m) => m.ts === posted.ts);
    assert.match(blockText(stored?.blocks), /Approved by <@U0BOB> <!date\^1893495600\^/);
    assert.doesNotMatch(blockText(stored?.blocks), /approval_approve/);
  });

  test("escalation_card posts and updates the same way", async () => {
    const escalation = {
      escalationId: "es-1",
      fromName: "Customer Service",
      owner: { kind: "group" as const, id: "S0BILLING" },
      note: {
        requester: "alice@example.com",
        summary: "Angry customer",
        done: [],
        reason: "Refund over limit",
        urgency: "urgent" as const,
        confidence: 0.4,
        lane: "support" as const,
        recommended_action: "Call back",
        facts: {},
      },
      state: { status: "open" as const },
    };
    const base = {
      kind: "escalation_card" as const,
      channel: CHANNEL,
      threadTs: root,
      persona: CS,
    };
    const posted = await chat.deliver({ ...base, escalation }, "out-5");
    assert.deepEqual(lastPost().metadata, outboxMeta("out-5"));
    assert.match(blockText(lastPost().blocks), /escalation_take_over/);

    const taken = { status: "taken_over" as const, by: "U0BOB", at: "2030-01-01T11:00:00.000Z" };
    assert.ok(posted.ts);
    await chat.deliver(
      { ...base, updateTs: posted.ts, escalation: { ...escalation, state: taken } },
      "out-6",
    );
    const [update] = emulator.callsTo("chat.update");
    assert.equal(update?.args.ts, posted.ts);
    assert.match(blockText(update?.args.blocks), /Taken over by <@U0BOB>/);
  });

  test("notice keeps Baton's leading group mention and escapes the rest", async () => {
    await chat.deliver(
      {
        kind: "notice",
        channel: CHANNEL,
        threadTs: root,
        text: "<!subteam^S0BILLING> see <!channel> & co",
      },
      "out-7",
    );
    const args = lastPost();
    assert.equal(args.text, "<!subteam^S0BILLING> see &lt;!channel&gt; &amp; co");
    assert.equal(args.thread_ts, root);
    assert.deepEqual(args.metadata, outboxMeta("out-7"));

    assert.equal(noticeText("<!subteam^s0lower> hi"), "&lt;!subteam^s0lower&gt; hi");
    assert.equal(noticeText("hi <!subteam^S0BILLING>"), "hi &lt;!subteam^S0BILLING&gt;");
    assert.equal(
      noticeText("<!subteam^S0A> <!subteam^S0B> go"),
      "<!subteam^S0A> <!subteam^S0B> go",
    );
    assert.equal(noticeText("<!subteam^S0A|@x> go"), "&lt;!subteam^S0A|@x&gt; go");
    // A channel's members are paged with a leading <!here>, and nowhere else.
    assert.equal(noticeText("<!here> ⏰ <!here> late"), "<!here> ⏰ &lt;!here&gt; late");
    assert.equal(noticeText("<!here|x> go"), "&lt;!here|x&gt; go");
    assert.equal(noticeText("<!channel> go"), "&lt;!channel&gt; go");

    await chat.deliver({ kind: "notice", channel: "C0OPS", text: "plain" }, "out-8");
    assert.equal(lastPost().thread_ts, undefined);
    assert.equal(lastPost().channel, "C0OPS");
  });

  test("failure_notice points at a command that exists", async () => {
    await chat.deliver(
      {
        kind: "failure_notice",
        channel: CHANNEL,
        threadTs: root,
        taskId: "task-9",
        reason: "model down",
      },
      "out-9",
    );
    const args = lastPost();
    assert.equal(args.thread_ts, root);
    assert.equal(args.username, undefined);
    // Without the workspace's URL there is no thread link to give: the command, and what it takes.
    assert.match(blockText(args.blocks), /`\/baton audit` with a link to this thread/);
    assert.doesNotMatch(blockText(args.blocks), /task-9/);
    assert.deepEqual(args.metadata, outboxMeta("out-9"));
  });

  test("ephemeral goes to one user, escaped", async () => {
    const sent = await chat.deliver(
      {
        kind: "ephemeral",
        channel: CHANNEL,
        threadTs: root,
        user: "U0ALICE",
        text: "<!here> only you",
      },
      "out-10",
    );
    assert.deepEqual(sent, { channel: CHANNEL });
    const [eph] = emulator.ephemerals;
    assert.equal(eph?.user, "U0ALICE");
    assert.equal(eph?.thread_ts, root);
    assert.equal(eph?.text, "&lt;!here&gt; only you");
    assert.equal(emulator.callsTo("chat.postMessage").length, 0);
  });

  test("direct_message opens the DM and posts its escaped text there", async () => {
    const sent = await chat.deliver(
      { kind: "direct_message", user: "U0ALICE", text: "Your digest <!everyone>" },
      "out-11",
    );
    const dm = emulator.dmChannelFor("U0ALICE");
    assert.equal(emulator.callsTo("conversations.open")[0]?.args.users, "U0ALICE");
    assert.equal(sent.channel, dm);
    assert.ok(sent.ts);
    const args = lastPost();
    assert.equal(args.channel, dm);
    assert.equal(args.text, "Your digest &lt;!everyone&gt;");
    assert.equal(args.blocks, undefined);
    assert.deepEqual(args.metadata, outboxMeta("out-11"));
  });

  test("digest posts the digest's blocks to the channel, not in a thread", async () => {
    const sent = await chat.deliver(
      { kind: "digest", channel: "C0DIGEST", digest: DIGEST },
      "out-12",
    );
    const args = lastPost();
    assert.equal(args.channel, "C0DIGEST");
    assert.equal(args.thread_ts, undefined);
    assert.deepEqual(args.metadata, outboxMeta("out-12"));
    assertWithinSlackLimits({ text: args.text, blocks: args.blocks });
    assert.match(String(args.text), /Baton daily digest: 30 idle tasks, 1 waiting approvals/);
    const rendered = blockText(args.blocks);
    assert.match(rendered, /Refund order 1000 &lt;!channel&gt;/);
    assert.match(rendered, /<@U0BOB>, <!subteam\^S0BILLING>/);
    assert.match(rendered, /<!date\^1736154000\^/, "ISO asOf rendered as a Slack date");
    assert.match(rendered, /\+18 more not shown/);
    const [stored] = emulator.messagesIn("C0DIGEST").filter((m) => m.ts === sent.ts);
    assert.ok(stored?.blocks);
    assert.equal(sent.channel, "C0DIGEST");
  });

  test("digest_dm opens the owner's DM and posts the digest's blocks there", async () => {
    const digest: DigestInput = { ...DIGEST, audience: "owner", staleApprovals: [] };
    const sent = await chat.deliver({ kind: "digest_dm", user: "U0ALICE", digest }, "out-13");
    const dm = emulator.dmChannelFor("U0ALICE");
    assert.equal(emulator.callsTo("conversations.open")[0]?.args.users, "U0ALICE");
    assert.equal(sent.channel, dm);
    assert.ok(sent.ts);
    const args = lastPost();
    assert.equal(args.channel, dm);
    assert.deepEqual(args.metadata, outboxMeta("out-13"));
    assertWithinSlackLimits({ text: args.text, blocks: args.blocks });
    assert.match(blockText(args.blocks), /Your Baton digest/);
    assert.doesNotMatch(blockText(args.blocks), /refund\*/);
  });

  test("findPosted finds a delivery by its outbox id and no other", async () => {
    const reply = (text: string): ChatIntent => ({
      kind: "agent_reply",
      channel: CHANNEL,
      threadTs: root,
      persona: CS,
      text,
    });
    const writtenAt = new Date();
    const first = await chat.deliver(reply("one"), "out-a");
    const second = await chat.deliver(reply("two"), "out-b");
    assert.equal(await chat.findPosted(reply("one"), "out-a", writtenAt), first.ts);
    assert.equal(await chat.findPosted(reply("two"), "out-b", writtenAt), second.ts);
    assert.equal(await chat.findPosted(reply("three"), "out-c", writtenAt), undefined);
    const [replies] = emulator.callsTo("conversations.replies");
    assert.equal(replies?.args.include_all_metadata, "true");
    assert.equal(replies?.args.ts, root);

    const before = emulator.callsTo("conversations.replies").length;
    const cardUpdate: ChatIntent = {
      kind: "approval_card",
      channel: CHANNEL,
      threadTs: root,
      persona: BILLING,
      updateTs: first.ts,
      approval: {
        approvalId: "ap-2",
        agentName: "Billing",
        toolName: "refund",
        args: {},
        requesterId: "U0ALICE",
        approvers: { users: ["U0BOB"], groups: [] },
        expiresAt: "2030-01-01T12:00:00.000Z",
        state: { status: "expired", at: "2030-01-01T12:00:00.000Z" },
      },
    };
    assert.equal(await chat.findPosted(cardUpdate, "out-a", writtenAt), undefined);
    const ephemeral: ChatIntent = { kind: "ephemeral", channel: CHANNEL, user: "U0BOB", text: "." };
    assert.equal(await chat.findPosted(ephemeral, "out-a", writtenAt), undefined);
    assert.equal(
      emulator.callsTo("conversations.replies").length,
      before,
      "updates are not looked for",
    );
  });

  test("findPosted finds a message outside a thread in the history since its row was written", async () => {
    const writtenAt = new Date();
    const digest: ChatIntent = { kind: "digest", channel: "C0DIGEST", digest: DIGEST };
    const digestDm: ChatIntent = { kind: "digest_dm", user: "U0ALICE", digest: DIGEST };
    const dm: ChatIntent = { kind: "direct_message", user: "U0ALICE", text: "hi" };
    const notice: ChatIntent = { kind: "notice", channel: "C0DIGEST", text: "no thread" };
    const posted = {
      digest: await chat.deliver(digest, "out-d"),
      digestDm: await chat.deliver(digestDm, "out-e"),
      dm: await chat.deliver(dm, "out-f"),
      notice: await chat.deliver(notice, "out-g"),
    };
    // Someone else's messages after them, enough to take more than one page.
    for (let i = 0; i < 250; i++)
      emulator.addMessage({ channel: "C0DIGEST", user: "U0BOB", text: `${i}` });
    assert.equal(await chat.findPosted(digest, "out-d", writtenAt), posted.digest.ts);
    assert.equal(await chat.findPosted(digestDm, "out-e", writtenAt), posted.digestDm.ts);
    assert.equal(await chat.findPosted(dm, "out-f", writtenAt), posted.dm.ts);
    assert.equal(await chat.findPosted(notice, "out-g", writtenAt), posted.notice.ts);
    assert.equal(await chat.findPosted(digest, "out-dm", writtenAt), undefined, "another id");
    const history = emulator.callsTo("conversations.history");
    assert.ok(history.every((c) => c.args.include_all_metadata === "true"));
    assert.ok(
      history.some((c) => c.args.cursor),
      "the search pages back through the history",
    );
    assert.equal(
      history.find((c) => c.args.channel !== "C0DIGEST")?.args.channel,
      emulator.dmChannelFor("U0ALICE"),
    );

    // A message written long after the row would have been found: one from before it is not looked at.
    const later = new Date(writtenAt.getTime() + 3_600_000);
    assert.equal(await chat.findPosted(digest, "out-d", later), undefined);
  });

  test("findPosted posts again, with a warning, where the app cannot read the history", async () => {
    const digest: ChatIntent = { kind: "digest", channel: "C0DIGEST", digest: DIGEST };
    emulator.failNext("conversations.history", { error: "not_in_channel" });
    assert.equal(await chat.findPosted(digest, "out-d", new Date()), undefined);
    emulator.failNext("conversations.history", { error: "internal_error" });
    await assert.rejects(chat.findPosted(digest, "out-d", new Date()), TransientError);
  });

  test("groupMembers caches each group for a minute", async () => {
    clock = 1_000_000;
    assert.deepEqual(await chat.groupMembers("S0BILLING"), ["U0ALICE", "U0BOB"]);
    emulator.setUsergroup({ id: "S0BILLING", handle: "billing-leads", users: ["U0CAROL"] });
    clock += 59_000;
    assert.deepEqual(await chat.groupMembers("S0BILLING"), ["U0ALICE", "U0BOB"]);
    assert.equal(emulator.callsTo("usergroups.users.list").length, 1);
    clock += 2_000;
    assert.deepEqual(await chat.groupMembers("S0BILLING"), ["U0CAROL"]);
    assert.equal(emulator.callsTo("usergroups.users.list").length, 2);
  });

  test("channelMembers reads every page of a large channel, once a minute", async () => {
    clock = 5_000_000;
    const members = await chat.channelMembers("C0BIG");
    assert.equal(members.length, 2_500);
    assert.equal(new Set(members).size, 2_500);
    assert.equal(emulator.callsTo("conversations.members").length, 3, "pages of a thousand");
    await chat.channelMembers("C0BIG");
    assert.equal(emulator.callsTo("conversations.members").length, 3, "cached");
    await assert.rejects(chat.channelMembers("C0UNKNOWN"), /channel_not_found/);
  });

  test("a failed group lookup is not cached", async () => {
    emulator.failNext("usergroups.users.list", { error: "internal_error" });
    await assert.rejects(chat.groupMembers("S0OTHER"), TransientError);
    await assert.rejects(chat.groupMembers("S0OTHER"), /no_such_subteam/);
    assert.equal(emulator.callsTo("usergroups.users.list").length, 2);
  });

  test("Slack refusals are final; rate limits and outages are retriable", async () => {
    const notice: ChatIntent = { kind: "notice", channel: "C0GONE", text: "hi" };

    emulator.failNext("chat.postMessage", { error: "channel_not_found" });
    await assert.rejects(chat.deliver(notice, "out-x"), (error: unknown) => {
      assert.ok(error instanceof SlackDeliveryError);
      assert.equal(error.code, "slack_rejected");
      assert.equal(error.retriable, false);
      assert.match(error.message, /chat\.postMessage: channel_not_found/);
      assert.doesNotMatch(error.message, /xoxb/);
      return true;
    });

    // The default client waits out Retry-After, then gives up when it may not retry.
    emulator.failNext("chat.postMessage", { error: "ratelimited", retryAfter: 0 });
    await assert.rejects(chat.deliver(notice, "out-x"), isRetriable);

    const strict = new WebClient("xoxb-test", {
      slackApiUrl: emulator.url,
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
    });
    const strictChat = createSlackChatSurface(strict, { log: createLogger({ level: "silent" }) });
    emulator.failNext("chat.postMessage", { error: "ratelimited", retryAfter: 3 });
    await assert.rejects(strictChat.deliver(notice, "out-x"), (error: unknown) => {
      assert.ok(isRetriable(error));
      assert.match((error as Error).message, /rate-limited chat\.postMessage/);
      return true;
    });

    emulator.failNext("chat.postMessage", { error: "internal_error" });
    await assert.rejects(chat.deliver(notice, "out-x"), isRetriable);
    emulator.failNext("chat.postMessage", { error: "bad_gateway", status: 503 });
    await assert.rejects(chat.deliver(notice, "out-x"), isRetriable);
  });

  test("a lookup that may not wait fails at once on a 429; one that may, sharing it, asks again", async () => {
    const options = { slackApiUrl: emulator.url, logLevel: webApi.LogLevel.ERROR };
    const waiting = new WebClient("xoxb-test", { ...options, retryConfig: { retries: 1 } });
    const noWait = new WebClient("xoxb-test", { ...options, rejectRateLimitedCalls: true });
    const both = createSlackChatSurface(waiting, {
      log: createLogger({ level: "silent" }),
      noWaitClient: noWait,
    });
    // Half a minute: a lookup that waited it out would outlast the test.
    const limited = { error: "ratelimited", retryAfter: 30 };
    emulator.failNext("usergroups.users.list", limited);
    const rejected = (error: unknown) => error instanceof RetryAfterError;
    await assert.rejects(both.groupMembers("S0BILLING", { waitOutRateLimit: false }), rejected);
    await both.groupMembers("S0BILLING", { waitOutRateLimit: false });
    assert.deepEqual(
      emulator.callsTo("usergroups.users.list").map((c) => c.failed),
      ["ratelimited", undefined],
      "the 429 was not kept: the next lookup asked again",
    );

    // A click's check joins App Home's call in flight, which Slack then rate-limits.
    emulator.failNext("conversations.members", limited);
    const held = emulator.holdAnswer("conversations.members");
    const home = both.channelMembers("C0BIG", { waitOutRateLimit: false });
    await held.arrived;
    const check = both.channelMembers("C0BIG");
    held.release();
    await assert.rejects(home, rejected);
    assert.equal((await check).length, 2_500, "the check asked again, and got its answer");
  });
});

function isRetriable(error: unknown): boolean {
  assert.ok(error instanceof TransientError, String(error));
  assert.equal(error.retriable, true);
  assert.doesNotMatch(error.message, /xoxb/);
  return true;
}
