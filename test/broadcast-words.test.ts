import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { clip } from "../src/slack/mrkdwn.ts";
import { agentReply } from "../src/slack/views/task-message.ts";
import { assertWithinSlackLimits } from "./support/slack-limits.ts";

const LIVE = /@(channel|here|everyone)(?![\p{L}\p{N}_\u200D])/iu;

describe("a cut never turns a harmless word into a broadcast", () => {
  it("clip: '@channelz' cut after '@channel' stays defused", () => {
    const out = clip(`${"x".repeat(20)}@channelzz`, 29);
    assert.doesNotMatch(out, LIVE, JSON.stringify(out));
  });

  it("an agent's answer: the notification text and the section split stay defused", () => {
    // 291 chars then "@channelzz": the 300-char fallback ends "…@channel…".
    const answer = `${"word ".repeat(58)}x@channelzz and more text after it`;
    const reply = agentReply({ text: answer });
    assertWithinSlackLimits(reply);
    assert.doesNotMatch(reply.text, LIVE, reply.text.slice(-40));
    // One long word split across sections: the first ends with "@here".
    const long = agentReply({ text: `${"y".repeat(2995)}@hereabouts` });
    assertWithinSlackLimits(long);
  });
});
