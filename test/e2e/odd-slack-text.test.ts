import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  CHANNEL,
  type Harness,
  REQUESTER,
  SIGNING_SECRET,
  startHarness,
} from "../support/harness.ts";
import type { Script } from "../support/model-server.ts";
import { taskInThread, taskWithStatus } from "../support/observe.ts";
import { deliverEvent, messageEvent } from "../support/slack-signing.ts";

// What people send that is not plain text. A NUL or half an emoji in a message made Postgres refuse
// it: a 500 on Slack's delivery and each retry, and the message lost. A file shared with no comment
// reached the agent as an empty message, a paid turn with nothing to read.

let h: Harness;
before(async () => {
  const script: Script = () => ({ content: "Noted." });
  h = await startHarness({ script });
});
after(async () => {
  await h.close();
});

for (const [name, odd] of [
  ["a NUL", "\u0000"],
  ["half an emoji", "\ud83d"],
] as const) {
  test(`a mention holding ${name} is accepted once, and its text kept without it`, async () => {
    const { ts } = h.slack.addMessage({ channel: CHANNEL, user: REQUESTER, text: "order 1042?" });
    const statuses: number[] = [];
    for (let retry = 0; retry <= 1; retry++) {
      const options = { ts, eventId: `EvOdd${name}`, ...(retry && { retryNum: retry }) };
      statuses.push((await h.mention(`where is order 1042${odd}?`, options)).status);
    }
    assert.deepEqual(statuses, [200, 200]);
    const task = await h.until("the answer", () => taskWithStatus(h.db.db, ts, "done"));
    assert.ok(task.request_text.isWellFormed() && !task.request_text.includes("\u0000"));
    assert.match(task.request_text, /^where is order 1042.?\?$/);
  });
}

test("a file shared in a task's thread with no comment reaches the agent by its name", async () => {
  const { ts } = await h.mention("my order 1042 arrived damaged");
  await h.until("the first answer", () => taskWithStatus(h.db.db, ts, "done"));
  const before = h.model.requests.length;
  const { ts: fileTs } = h.slack.addMessage({
    channel: CHANNEL,
    user: REQUESTER,
    text: "",
    threadTs: ts,
  });
  const res = await deliverEvent(h.endpoint, SIGNING_SECRET, {
    ...messageEvent({ user: REQUESTER, channel: CHANNEL, text: "", ts: fileTs, threadTs: ts }),
    subtype: "file_share",
    files: [{ id: "F0PHOTO", name: "damaged-box.jpg", mimetype: "image/jpeg" }],
  });
  assert.equal(res.status, 200);
  const request = await h.until("the agent's next turn", async () => h.model.requests[before]);
  const last = request.body.messages.at(-1);
  assert.equal(last?.role, "user");
  assert.match(String(last?.content), /\[shared a file: damaged-box\.jpg\]/);
  assert.ok(await taskInThread(h.db.db, ts));
});
