import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { after, before, beforeEach, describe, test } from "node:test";
import { App, HTTPReceiver, LogLevel, webApi } from "@slack/bolt";
import OpenAI from "openai";
import pg from "pg";
import type { DigestInput } from "../src/core/digest.ts";
import type { ChatIntent, ChatSurface } from "../src/core/ports.ts";
import { parseTaskRef } from "../src/db/reports.repository.ts";
import { RetryAfterError, TransientError } from "../src/errors.ts";
import { createLogger } from "../src/log.ts";
import { createSlackChatSurface, messageLink, noticeText } from "../src/slack/chat-surface.ts";
import { createMemberLookup } from "../src/slack/members.ts";
import { SlackDeliveryError } from "../src/slack/web-api-errors.ts";
import { createTestDatabase, testServerUrl } from "./support/db.ts";
import { sweepTestDatabases, TEST_DATABASES, type TestDatabaseNames } from "./support/db-sweep.ts";
import { type ModelServer, scriptByAgent, startModelServer } from "./support/model-server.ts";
import { type SlackEmulator, startSlackEmulator } from "./support/slack-emulator.ts";
import { assertWithinSlackLimits } from "./support/slack-limits.ts";
import {
  appMentionEvent,
  blockActionsPayload,
  deliverCommand,
  deliverEvent,
  deliverInteraction,
  deliverUrlVerification,
  signSlackRequest,
  viewSubmissionPayload,
} from "./support/slack-signing.ts";

// The real Slack Web API client against the emulator: Baton's chat surface, and the fakes the
// other tests stand on (the emulator, the model server, request signing with real Bolt).
// One suite per former test file.

// Bolt re-exports @slack/web-api, so the tests need no direct dependency on it.
const { WebClient } = webApi;

describe("chat-surface", async () => {
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

    test("Baton's own organization is auth.test's workspace (and Enterprise organization); unknown while Slack does not answer", async () => {
      const log = createLogger({ level: "silent" });
      const fresh = createSlackChatSurface(client, { log });
      emulator.failNext("auth.test", { error: "internal_error" });
      assert.equal(await fresh.ownOrganization(), undefined);
      // Asked again at the next look, not kept unknown.
      assert.deepEqual(await fresh.ownOrganization(), {
        teamId: "T0TESTTEAM",
        enterpriseId: undefined,
        name: "Baton Test",
      });

      const enterprise = await startSlackEmulator({ enterpriseId: "E0ACME" });
      try {
        const inOrg = new WebClient("xoxb-test", {
          slackApiUrl: enterprise.url,
          retryConfig: { retries: 0 },
          logLevel: webApi.LogLevel.ERROR,
        });
        const own = await createSlackChatSurface(inOrg, { log }).ownOrganization();
        assert.equal(own?.enterpriseId, "E0ACME");
      } finally {
        await enterprise.close();
      }
    });

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
      // A typed <!channel> reads as "@channel", with a zero-width joiner that keeps it from pinging.
      assert.match(rendered, /Refund order 1000 @\u200Dchannel/);
      assert.doesNotMatch(rendered, /<!channel>/);
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
      const ephemeral: ChatIntent = {
        kind: "ephemeral",
        channel: CHANNEL,
        user: "U0BOB",
        text: ".",
      };
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

    test("a list no longer asked for is let go once its minute is over", async () => {
      // Channels that once owned work (an escalation's own channel, an archived one) come and go
      // over the weeks a process runs: their member lists must not stay with it.
      let now = 0;
      const fake = {
        conversations: { members: async () => ({ members: ["U0ALICE", "U0BOB"] }) },
        usergroups: { users: { list: async () => ({ users: ["U0CAROL"] }) } },
      } as unknown as webApi.WebClient;
      const lookup = createMemberLookup({ client: fake, noWait: fake }, (_method, run) => run(), {
        now: () => now,
        cacheMs: 60_000,
      });
      for (let i = 0; i < 1_000; i++) {
        await lookup.channelMembers(`C0ONCE${i}`);
        await lookup.groupMembers(`S0ONCE${i}`);
        now += 1_000;
      }
      assert.ok(lookup.listsHeld() <= 2 * 61, `${lookup.listsHeld()} lists held`);
      now += 60_000;
      await lookup.channelMembers("C0LATER");
      assert.equal(lookup.listsHeld(), 1);
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

    test("a scope the app lacks is named, with how to add it", async () => {
      emulator.failNext("conversations.members", { error: "missing_scope", needed: "groups:read" });
      await assert.rejects(
        // A channel no other test reads, so no cached list answers instead.
        chat.channelMembers("C0SCOPES"),
        /conversations\.members: missing_scope \(the app lacks the groups:read scope: .*manifest\.yml.*reinstall/,
      );
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
});

describe("chat-surface-text-alone", async () => {
  const CHANNEL = "C0SUPPORT";
  const BILLING = { name: "Billing", icon: ":moneybag:" };

  describe("Slack refuses a message's blocks: its text goes alone, once", () => {
    let emulator: SlackEmulator;
    let client: webApi.WebClient;
    let chat: ChatSurface;
    let root: string;
    const lines: string[] = [];

    before(async () => {
      emulator = await startSlackEmulator();
      client = new WebClient("xoxb-test", {
        slackApiUrl: emulator.url,
        retryConfig: { retries: 0 },
        logLevel: webApi.LogLevel.ERROR,
      });
      const destination = new Writable({
        write(chunk, _encoding, done) {
          lines.push(String(chunk));
          done();
        },
      });
      chat = createSlackChatSurface(client, {
        log: createLogger({ level: "warn", destination }),
        workspaceUrl: "https://acme.slack.com/",
      });
    });
    after(() => emulator.close());
    beforeEach(() => {
      emulator.reset();
      lines.length = 0;
      root = emulator.addMessage({ channel: CHANNEL, user: "U0ALICE", text: "refund?" }).ts;
    });

    const posts = () => emulator.callsTo("chat.postMessage");
    const botReplies = () => emulator.messagesIn(CHANNEL, root).filter((m) => m.ts !== root);
    const approvalIntent = (extra: Partial<Extract<ChatIntent, { kind: "approval_card" }>> = {}) =>
      ({
        kind: "approval_card",
        channel: CHANNEL,
        threadTs: root,
        persona: BILLING,
        approval: {
          approvalId: "ap-1",
          agentName: "Billing",
          toolName: "issue_refund",
          args: { order: "1077", amount_usd: 149 },
          requesterId: "U0ALICE",
          approvers: { users: ["U0LEE"], groups: [] },
          expiresAt: "2030-01-01T12:00:00.000Z",
          state: { status: "pending" },
        },
        ...extra,
      }) satisfies ChatIntent;

    test("an answer refused for its blocks is posted as its whole text, with the outbox id", async () => {
      emulator.failNext("chat.postMessage", { error: "msg_blocks_too_long" });
      const text = `Here is everything & more <b>: ${"line of the answer ".repeat(1000)}`;
      const sent = await chat.deliver(
        { kind: "agent_reply", channel: CHANNEL, threadTs: root, persona: BILLING, text },
        "out-1",
      );
      const [refused, alone] = posts();
      assert.equal(posts().length, 2);
      assert.equal(refused?.failed, "msg_blocks_too_long");
      assert.ok(Array.isArray(refused?.args.blocks));
      assert.equal(alone?.args.blocks, undefined);
      assert.deepEqual(alone?.args.metadata, {
        event_type: "baton_outbox",
        event_payload: { outbox_id: "out-1" },
      });
      const [stored] = botReplies();
      assert.equal(botReplies().length, 1);
      assert.equal(stored?.ts, sent.ts);
      assert.equal(stored?.username, "Billing");
      assert.ok(stored?.text?.startsWith("Here is everything &amp; more &lt;b&gt;: line of"));
      assert.ok(
        (stored?.text?.length ?? 0) > 18_000,
        "the whole answer, not the 300-char fallback",
      );
      const warning = lines.map((l) => JSON.parse(l)).find((l) => l.level === 40);
      assert.match(warning?.msg ?? "", /refused a message's blocks/);
      assert.match(JSON.stringify(warning?.err), /msg_blocks_too_long/);
    });

    test("a pending approval card refused says it has no buttons and no other way", async () => {
      emulator.failNext("chat.postMessage", { error: "invalid_blocks" });
      await chat.deliver(approvalIntent(), "out-2");
      assert.equal(posts().length, 2);
      const [stored] = botReplies();
      assert.equal(botReplies().length, 1);
      assert.equal(stored?.blocks, undefined);
      assert.match(stored?.text ?? "", /Approval needed: Billing wants to call issue_refund/);
      assert.match(stored?.text ?? "", /Approvers: <@U0LEE>/);
      assert.match(stored?.text ?? "", /no Approve \/ Reject buttons, and there is no other way/);
    });

    test("a card update refused clears the old blocks and says what happened in text", async () => {
      const posted = await chat.deliver(approvalIntent(), "out-3");
      emulator.failNext("chat.update", { error: "msg_blocks_too_long" });
      const decided = { status: "approved" as const, by: "U0LEE", at: "2030-01-01T11:00:00.000Z" };
      const base = approvalIntent();
      await chat.deliver(
        { ...base, updateTs: posted.ts, approval: { ...base.approval, state: decided } },
        "out-4",
      );
      const updates = emulator.callsTo("chat.update");
      assert.equal(updates.length, 2);
      assert.deepEqual(updates[1]?.args.blocks, []);
      const [card] = botReplies();
      assert.equal(botReplies().length, 1);
      assert.deepEqual(card?.blocks, [], "no stale Approve / Reject buttons left");
    });

    test("any other refusal, or a second one, is not retried", async () => {
      emulator.failNext("chat.postMessage", { error: "channel_not_found" });
      await assert.rejects(chat.deliver(approvalIntent(), "out-5"), SlackDeliveryError);
      assert.equal(posts().length, 1);

      emulator.failNext("chat.postMessage", { error: "msg_blocks_too_long" }, 2);
      await assert.rejects(
        chat.deliver(approvalIntent(), "out-6"),
        (error: unknown) =>
          error instanceof SlackDeliveryError && error.slackError === "msg_blocks_too_long",
      );
      assert.equal(posts().length, 3);
      assert.equal(botReplies().length, 0);
    });

    test("the emulator refuses blocks past 12,000 characters of text, as Slack does", async () => {
      const section = (n: number) => ({
        type: "section",
        text: { type: "mrkdwn", text: "y".repeat(n) },
      });
      await assert.rejects(
        client.chat.postMessage({
          channel: CHANNEL,
          text: "too long",
          blocks: [section(3000), section(3000), section(3000), section(3001)],
        }),
        /msg_blocks_too_long/,
      );
      const ok = await client.chat.postMessage({
        channel: CHANNEL,
        text: "fits",
        blocks: [section(3000), section(3000), section(3000), section(3000)],
      });
      assert.ok(ok.ts);
    });
  });
});

describe("support-selftest", async () => {
  describe("slack emulator with the real WebClient", () => {
    let emulator: SlackEmulator;
    let client: webApi.WebClient;
    before(async () => {
      emulator = await startSlackEmulator({
        users: [{ id: "U0ALICE", name: "alice", tz: "America/New_York" }],
        usergroups: [{ id: "S0BILLING", handle: "billing-leads", users: ["U0ALICE", "U0BOB"] }],
      });
      client = new WebClient("xoxb-test", {
        slackApiUrl: emulator.url,
        retryConfig: { retries: 0 },
      });
    });
    after(() => emulator.close());

    test("auth.test names the bot", async () => {
      const res = await client.auth.test();
      assert.equal(res.user_id, "U0BATONBOT");
      assert.equal(res.bot_id, "B0BATONBOT");
    });

    test("postMessage, update and replies keep a thread", async () => {
      const root = emulator.addMessage({
        channel: "C0SUPPORT",
        user: "U0ALICE",
        text: "where is 1042?",
      });
      const first = await client.chat.postMessage({
        channel: "C0SUPPORT",
        thread_ts: root.ts,
        text: "Looking",
        username: "Customer Service",
        blocks: [{ type: "section", text: { type: "mrkdwn", text: "Looking" } }],
      });
      const second = await client.chat.postMessage({
        channel: "C0SUPPORT",
        thread_ts: root.ts,
        text: "Found",
      });
      assert.ok(first.ts && second.ts && first.ts > root.ts && second.ts > first.ts);
      assert.match(first.ts, /^\d{10}\.\d{6}$/);
      assert.equal(first.message?.username, "Customer Service");

      await client.chat.update({ channel: "C0SUPPORT", ts: first.ts, text: "Looked" });
      const replies = await client.conversations.replies({ channel: "C0SUPPORT", ts: root.ts });
      assert.deepEqual(
        replies.messages?.map((m) => m.text),
        ["where is 1042?", "Looked", "Found"],
      );
      assert.deepEqual(emulator.messagesIn("C0SUPPORT", root.ts).length, 3);
      // blocks arrive form-encoded as a JSON string and are stored parsed
      const posted = emulator.callsTo("chat.postMessage")[0];
      assert.ok(Array.isArray(posted?.args.blocks));
    });

    test("users, groups, DMs and views", async () => {
      const alice = await client.users.info({ user: "U0ALICE" });
      assert.equal(alice.user?.tz, "America/New_York");
      assert.ok(typeof alice.user?.tz_offset === "number" && alice.user.tz_offset < 0);
      const group = await client.usergroups.users.list({ usergroup: "S0BILLING" });
      assert.deepEqual(group.users, ["U0ALICE", "U0BOB"]);
      const dm = await client.conversations.open({ users: "U0ALICE" });
      const again = await client.conversations.open({ users: "U0ALICE" });
      assert.equal(dm.channel?.id, again.channel?.id);
      const view = {
        type: "modal" as const,
        title: { type: "plain_text" as const, text: "Reject" },
        blocks: [],
      };
      const opened = await client.views.open({ trigger_id: "1.2", view });
      assert.ok(opened.view?.id);
      await client.views.update({
        view_id: opened.view.id,
        view: { ...view, private_metadata: "x" },
      });
      assert.equal(emulator.views.get(opened.view.id)?.private_metadata, "x");
      const unknown = await client.apiCall("reactions.add", { name: "eyes" });
      assert.equal(unknown.ok, true);
      assert.equal(emulator.callsTo("reactions.add").length, 1);
    });

    test("a bad token is invalid_auth", async () => {
      const bad = new WebClient("xoxb-wrong", {
        slackApiUrl: emulator.url,
        retryConfig: { retries: 0 },
      });
      await assert.rejects(bad.auth.test(), (err: { data?: { error?: string } }) => {
        assert.equal(err.data?.error, "invalid_auth");
        return true;
      });
    });

    test("failure injection: ok:false once, then 429 with Retry-After", async () => {
      emulator.failNext("chat.postMessage", { error: "channel_not_found" });
      await assert.rejects(
        client.chat.postMessage({ channel: "C0GONE", text: "hi" }),
        /channel_not_found/,
      );
      emulator.failNext("chat.postMessage", { error: "ratelimited", retryAfter: 1 });
      const strict = new WebClient("xoxb-test", {
        slackApiUrl: emulator.url,
        retryConfig: { retries: 0 },
        rejectRateLimitedCalls: true,
      });
      await assert.rejects(
        strict.chat.postMessage({ channel: "C0X", text: "hi" }),
        (err: { retryAfter?: number }) => {
          assert.equal(err.retryAfter, 1);
          return true;
        },
      );
      const ok = await client.chat.postMessage({ channel: "C0X", text: "hi" });
      assert.equal(ok.ok, true);
    });
  });

  describe("model server with the real openai client", () => {
    let server: ModelServer;
    const script = scriptByAgent({
      "customer-service": [
        { toolCalls: [{ name: "lookup_order", arguments: { orderId: "1042" } }] },
        { toolCalls: [{ name: "lookup_order", arguments: '{"orderId": "10' }] },
        { content: "Order 1042 shipped." },
      ],
      fulfillment: [{ status: 500, error: "upstream exploded" }],
    });
    let openai: OpenAI;
    before(async () => {
      server = await startModelServer(script);
      openai = new OpenAI({ apiKey: "test", baseURL: server.baseURL, maxRetries: 0 });
    });
    after(() => server.close());

    const ask = (agent: string, name: string) =>
      openai.chat.completions.create({
        model: "gpt-4.1-mini",
        prompt_cache_key: agent,
        messages: [
          { role: "system", content: `You are ${name}.\nBe brief.` },
          { role: "user", content: "where is order 1042?" },
        ],
      });

    test("tool calls, verbatim malformed arguments, then content", async () => {
      const first = await ask("customer-service", "Customer Service");
      const call = first.choices[0]?.message.tool_calls?.[0];
      assert.equal(first.choices[0]?.finish_reason, "tool_calls");
      assert.ok(call?.type === "function" && call.id.startsWith("call_"));
      assert.deepEqual(JSON.parse(call.function.arguments), { orderId: "1042" });

      const second = await ask("customer-service", "Customer Service");
      const bad = second.choices[0]?.message.tool_calls?.[0];
      assert.equal(bad?.type === "function" && bad.function.arguments, '{"orderId": "10');

      const third = await ask("customer-service", "Customer Service");
      assert.equal(third.choices[0]?.message.content, "Order 1042 shipped.");
      assert.equal(third.choices[0]?.finish_reason, "stop");
      assert.ok((third.usage?.prompt_tokens ?? 0) > 0);
      assert.equal(server.requestsFor("customer-service").length, 3);
      assert.equal(
        server.requests[0]?.promptChars,
        "You are Customer Service.\nBe brief.where is order 1042?".length,
      );
    });

    test("scripted 500 and running out of replies", async () => {
      await assert.rejects(
        ask("fulfillment", "Fulfillment"),
        (err: InstanceType<typeof OpenAI.APIError>) => {
          assert.equal(err.status, 500);
          assert.match(err.message, /upstream exploded/);
          return true;
        },
      );
      await assert.rejects(
        ask("customer-service", "Customer Service"),
        /agent "customer-service" ran out/,
      );
      assert.deepEqual(script.remaining(), { "customer-service": 0, fulfillment: 0 });
      const models = await openai.models.list();
      assert.ok(models.data.length > 0);
    });

    test("a conversation OpenAI would refuse is refused, as OpenAI words it", async () => {
      const call = {
        id: "call_1",
        type: "function" as const,
        function: { name: "lookup_order", arguments: "{}" },
      };
      const refused = (messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[]) =>
        openai.chat.completions
          .create({ model: "gpt-4.1-mini", prompt_cache_key: "customer-service", messages })
          .then(
            () => assert.fail("the request should be refused"),
            (err: InstanceType<typeof OpenAI.APIError>) => {
              assert.equal(err.status, 400);
              return err.message;
            },
          );
      assert.match(
        await refused([
          { role: "user", content: "hi" },
          { role: "assistant", content: null, tool_calls: [call] },
          { role: "user", content: "and?" },
        ]),
        /did not have response messages: call_1/,
      );
      assert.match(
        await refused([
          { role: "user", content: "hi" },
          { role: "tool", tool_call_id: "call_9", content: "{}" },
        ]),
        /must be a response to a preceeding message with 'tool_calls'/,
      );
    });

    test("missing auth is a 401", async () => {
      const res = await fetch(`${server.baseURL}/chat/completions`, { method: "POST", body: "{}" });
      assert.equal(res.status, 401);
    });
  });

  describe("slack signing", () => {
    test("signSlackRequest matches Slack's documented example and node:crypto", () => {
      const secret = "8f742231b10e8888abcd99yyyzzz85a5";
      const body = [
        "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow",
        "&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner",
        "&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands",
        "%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN",
        "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c",
      ].join("");
      const headers = signSlackRequest(secret, body, 1531420618);
      assert.equal(
        headers["X-Slack-Signature"],
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
      );
      const byHand = createHmac("sha256", secret).update(`v0:1531420618:${body}`).digest("hex");
      assert.equal(headers["X-Slack-Signature"], `v0=${byHand}`);
      assert.equal(headers["X-Slack-Request-Timestamp"], "1531420618");
    });

    test("real Bolt accepts every delivery and answers through the emulator", async () => {
      const secret = "s3cret";
      const emulator = await startSlackEmulator();
      const seen: Record<string, unknown> = {};
      const app = new App({
        token: "xoxb-test",
        receiver: new HTTPReceiver({ signingSecret: secret, logLevel: LogLevel.ERROR }),
        clientOptions: { slackApiUrl: emulator.url, retryConfig: { retries: 0 } },
      });
      app.event("app_mention", async ({ event, say, context }) => {
        seen.retryNum = context.retryNum;
        await say({ text: "on it", thread_ts: event.ts });
      });
      app.action("approve", async ({ ack, respond, action }) => {
        await ack();
        await respond({ text: `approved ${"value" in action ? action.value : ""}` });
      });
      app.view("reject_reason", async ({ ack, view }) => {
        seen.reason = view.state.values.reason?.input?.value;
        seen.metadata = view.private_metadata;
        await ack();
      });
      app.command("/baton", async ({ ack, command }) => ack(`status for ${command.user_id}`));
      const server = (await app.start(0)) as Server;
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/slack/events`;
      try {
        assert.equal(
          (await deliverUrlVerification(url, secret, "abc")).body,
          '{"challenge":"abc"}',
        );
        const question = emulator.addMessage({ channel: "C0SUPPORT", user: "U0ALICE", text: "hi" });
        const mention = appMentionEvent({ ...question, text: "<@U0BATONBOT> hi" });
        assert.equal((await deliverEvent(url, secret, mention, { retryNum: 1 })).status, 200);
        const reply = await emulator.waitForCall("chat.postMessage");
        assert.equal(reply.args.thread_ts, question.ts);
        assert.equal(seen.retryNum, 1);

        const click = blockActionsPayload({
          userId: "U0ALICE",
          actionId: "approve",
          value: "ap_1",
          channel: "C0SUPPORT",
          messageTs: String(reply.args.ts ?? question.ts),
          responseUrl: emulator.responseUrl,
        });
        assert.equal((await deliverInteraction(url, secret, click)).status, 200);
        const responded = await emulator.waitForCall("response_url");
        assert.equal(responded.args.text, "approved ap_1");

        const submit = viewSubmissionPayload({
          userId: "U0ALICE",
          callbackId: "reject_reason",
          privateMetadata: "ap_1",
          values: { reason: { input: "too much" } },
        });
        assert.equal((await deliverInteraction(url, secret, submit)).status, 200);
        assert.deepEqual([seen.reason, seen.metadata], ["too much", "ap_1"]);

        const fields = { command: "/baton", text: "", user_id: "U0ALICE", channel_id: "C0SUPPORT" };
        const command = await deliverCommand(url, secret, fields);
        assert.equal(command.body, "status for U0ALICE");

        assert.equal((await deliverEvent(url, "wrong-secret", mention)).status, 401);
        const stale = Math.floor(Date.now() / 1000) - 600;
        assert.equal((await deliverEvent(url, secret, mention, { timestamp: stale })).status, 401);
      } finally {
        await app.stop();
        await emulator.close();
      }
    });
  });

  describe("test database sweep", () => {
    // Each test sweeps under a prefix of its own, so it never sees the databases of the runs that
    // share the server, nor they its.
    const prefixes: string[] = [];
    let admin: pg.Client;
    before(async () => {
      admin = new pg.Client({ connectionString: await testServerUrl() });
      await admin.connect();
    });
    after(async () => {
      try {
        for (const prefix of prefixes) {
          const { rows } = await admin.query<{ name: string }>(
            "select datname as name from pg_database where starts_with(datname, $1)",
            [prefix],
          );
          for (const { name } of rows) await admin.query(`drop database ${name} with (force)`);
        }
      } finally {
        await admin.end();
      }
    });

    /** A server of this test's own, as the sweep sees it: its names, and what is on it. */
    function namespace(): TestDatabaseNames & {
      make(rest: string, seenHoursAgo?: number): Promise<string>;
      left(): Promise<string[]>;
    } {
      const prefix = `baton_sweeptest_${randomBytes(3).toString("hex")}_`;
      prefixes.push(prefix);
      return {
        prefix,
        digest: "c0ffeec0ffee",
        async make(rest, seenHoursAgo) {
          const name = `${prefix}${rest}`;
          await admin.query(`create database ${name}`);
          if (seenHoursAgo !== undefined) {
            const { rows } = await admin.query<{ at: Date }>(
              "select now() - make_interval(hours => $1) as at",
              [seenHoursAgo],
            );
            const note = `a test database, first seen at ${rows[0]?.at.toISOString()}`;
            await admin.query(`comment on database ${name} is '${note}'`);
          }
          return name;
        },
        async left() {
          const { rows } = await admin.query<{ name: string }>(
            "select substr(datname, $2) as name from pg_database where starts_with(datname, $1) order by 1",
            [prefix, prefix.length + 1],
          );
          return rows.map((r) => r.name);
        },
      };
    }

    test("stale templates and killed runs' databases are dropped; the current template, the newest stale ones, one a test copied and one in use are not", async () => {
      const server = namespace();
      // Made oldest first: the sweep reads a template's age from its oid.
      await server.make("template_c0ffeec0ffee");
      await server.make("template_111111111111");
      const inUse = await server.make("template_222222222222");
      await server.make("template_333333333333");
      await server.make("template_444444444444");
      await server.make("template_555555555555");
      await server.make("template_666666666666_building");
      // A test copied template 111 a moment ago; tests of this checkout, killed hours ago or not.
      const copy = await server.make("111111111111_aaaaaaaaaaaa");
      await server.make("c0ffeec0ffee_bbbbbbbbbbbb", 7);
      await server.make("c0ffeec0ffee_cccccccccccc", 1);
      const busy = await server.make("c0ffeec0ffee_dddddddddddd", 7);
      const held: pg.Client[] = [];
      for (const database of [inUse, busy]) {
        const url = new URL(await testServerUrl());
        url.pathname = `/${database}`;
        const client = new pg.Client({ connectionString: url.toString() });
        await client.connect();
        held.push(client);
      }
      try {
        const dropped = await sweepTestDatabases(await testServerUrl(), server);
        assert.deepEqual(dropped.sort(), [
          `${server.prefix}c0ffeec0ffee_bbbbbbbbbbbb`,
          `${server.prefix}template_333333333333`,
          `${server.prefix}template_666666666666_building`,
        ]);
        assert.deepEqual(await server.left(), [
          "111111111111_aaaaaaaaaaaa",
          "c0ffeec0ffee_cccccccccccc",
          "c0ffeec0ffee_dddddddddddd",
          "template_111111111111",
          "template_222222222222",
          "template_444444444444",
          "template_555555555555",
          "template_c0ffeec0ffee",
        ]);
        // Postgres keeps no creation time: the sweep wrote when it first saw the test's copy.
        const { rows } = await admin.query<{ note: string | null }>(
          "select shobj_description(oid, 'pg_database') as note from pg_database where datname = $1",
          [copy],
        );
        assert.match(rows[0]?.note ?? "", /^a test database, first seen at \d{4}-/);
      } finally {
        for (const client of held) await client.end();
      }
    });

    test("while an older checkout's test database is there, whose name says no template, no template is dropped", async () => {
      const server = namespace();
      for (const digest of ["111111111111", "222222222222", "333333333333", "444444444444"])
        await server.make(`template_${digest}`);
      await server.make("eeeeeeeeeeee");
      assert.deepEqual(await sweepTestDatabases(await testServerUrl(), server), []);
      assert.equal((await server.left()).length, 5);
    });

    test("a test's database is named for its template's migrations, so the sweep knows what it was copied from", async () => {
      const database = await createTestDatabase();
      try {
        const name = new URL(database.url).pathname.slice(1);
        assert.match(name, new RegExp(`^baton_test_${TEST_DATABASES.digest}_[0-9a-f]{12}$`));
      } finally {
        await database.drop();
      }
    });
  });
});
