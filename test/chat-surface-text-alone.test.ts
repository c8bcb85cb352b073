import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, beforeEach, describe, test } from "node:test";
import { webApi } from "@slack/bolt";
import type { ChatIntent, ChatSurface } from "../src/core/ports.ts";
import { createLogger } from "../src/log.ts";
import { createSlackChatSurface, SlackDeliveryError } from "../src/slack/chat-surface.ts";
import { type SlackEmulator, startSlackEmulator } from "./support/slack-emulator.ts";

// Bolt re-exports @slack/web-api, so the test needs no direct dependency on it.
const { WebClient } = webApi;

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
    assert.ok((stored?.text?.length ?? 0) > 18_000, "the whole answer, not the 300-char fallback");
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
