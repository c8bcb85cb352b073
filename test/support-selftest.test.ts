import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { App, HTTPReceiver, LogLevel, webApi } from "@slack/bolt";
import OpenAI from "openai";
import { type ModelServer, scriptByAgent, startModelServer } from "./support/model-server.ts";
import { type SlackEmulator, startSlackEmulator } from "./support/slack-emulator.ts";
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

// Bolt re-exports @slack/web-api, so the test needs no direct dependency on it.
const { WebClient } = webApi;

describe("slack emulator with the real WebClient", () => {
  let emulator: SlackEmulator;
  let client: webApi.WebClient;
  before(async () => {
    emulator = await startSlackEmulator({
      users: [{ id: "U0ALICE", name: "alice", tz: "America/New_York" }],
      usergroups: [{ id: "S0BILLING", handle: "billing-leads", users: ["U0ALICE", "U0BOB"] }],
    });
    client = new WebClient("xoxb-test", { slackApiUrl: emulator.url, retryConfig: { retries: 0 } });
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
      assert.equal((await deliverUrlVerification(url, secret, "abc")).body, '{"challenge":"abc"}');
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
