import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CHANNEL, type Harness, SIGNING_SECRET, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { whereIsMyOrderScript } from "../support/scripts.ts";
import { finishedTask } from "../support/scripts-humans.ts";
import { deliverCommand } from "../support/slack-signing.ts";

// The customer's message becomes the task's title; Slack sends links and broadcasts as <...> tokens.
const REQUEST =
  "<https://evil.example/login|Verify your card here> <!channel> where is order 1042?";

let h: Harness;
before(async () => {
  h = await startHarness({ script: scriptByAgent(whereIsMyOrderScript()) });
  const { ts } = await h.mention(REQUEST);
  await h.until("flow 1 to finish", () => finishedTask(h.db.db, ts));
});
after(async () => {
  await h.close();
});

test("/baton status shows the customer's text as text: no live link, no broadcast", async () => {
  const res = await deliverCommand(h.endpoint, SIGNING_SECRET, {
    command: "/baton",
    text: "status 1042",
    user_id: "U0OPS",
    channel_id: CHANNEL,
    response_url: h.slack.responseUrl,
  });
  assert.equal(res.status, 200);
  const reply = await h.until("the answer", async () => h.slack.callsTo("response_url")[0]);
  const text = String(reply.args.text);
  assert.match(text, /Verify your card here/);
  assert.ok(!text.includes("<https://evil.example"), `a live link in: ${text}`);
  assert.ok(!text.includes("<!channel>"), `a broadcast in: ${text}`);
});
