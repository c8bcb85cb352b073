import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type Harness, REQUESTER, SIGNING_SECRET, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { deliverEvent, messageEvent } from "../support/slack-signing.ts";

// The manifest keeps the Messages tab open for typing and subscribes to message.im.
let h: Harness;
before(async () => {
  h = await startHarness({
    script: scriptByAgent({ "customer-service": [{ content: "Order 1042 ships today." }] }),
  });
});
after(async () => {
  await h.close();
});

test("a direct message to Baton is answered, not silently dropped", async () => {
  const dm = "D0DMREQUESTER";
  const text = "where is order 1042?";
  const { ts } = h.slack.addMessage({ channel: dm, user: REQUESTER, text });
  const res = await deliverEvent(
    h.endpoint,
    SIGNING_SECRET,
    messageEvent({ user: REQUESTER, channel: dm, text, ts }),
    { eventId: "EvDM1" },
  );
  assert.equal(res.status, 200);
  const answer = await h.until(
    "an answer in the DM",
    async () => h.slack.callsTo("chat.postMessage").find((c) => c.args.channel === dm),
    5_000,
  );
  assert.match(JSON.stringify(answer.args.blocks), /Order 1042 ships today/);
});
