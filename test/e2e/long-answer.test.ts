import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { BLOCKS_TEXT_BUDGET } from "../../src/slack/mrkdwn.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { postsInThread } from "../support/observe.ts";
import { blockTexts, finishedTask } from "../support/scripts-humans.ts";
import { BLOCKS_TEXT_MAX, blocksTextChars } from "../support/slack-emulator.ts";

// A model that lists everything: 30,000 characters with & and <, more than Slack takes in one
// message's blocks (it refuses about 12,000 with msg_blocks_too_long, as the emulator does): the
// answer goes out as several messages, each broken at a line.
const LINE = "Order 1042 & 1043: <pending> pick, pack & ship; ETA 3 days (R&D < ops).";
const ANSWER = Array.from({ length: 420 }, (_, i) => `${i + 1}. ${LINE}`).join("\n");

let h: Harness;
let threadTs: string;
before(async () => {
  assert.ok(ANSWER.length >= 30_000);
  h = await startHarness({ script: scriptByAgent({ "customer-service": [{ content: ANSWER }] }) });
  const { ts } = await h.mention("where are all my orders?");
  threadTs = ts;
  await h.until("the task to finish with its answer in Slack", () => finishedTask(h.db.db, ts));
});
after(async () => {
  await h.close();
});

test("a 30,000-character answer shows whole in the thread, in several messages, each at a line", async () => {
  assert.deepEqual(
    h.slack.calls.filter((c) => c.failed).map((c) => `${c.method}: ${c.failed}`),
    [],
    "Slack refused nothing",
  );
  const parts = postsInThread(h.slack, threadTs).filter((c) =>
    blockTexts(c).some((t) => t.includes("Order 1042")),
  );
  assert.ok(parts.length >= 5, `${parts.length} messages`);
  for (const part of parts) {
    const chars = blocksTextChars(part.args.blocks);
    assert.ok(chars <= BLOCKS_TEXT_BUDGET && chars < BLOCKS_TEXT_MAX, `${chars} characters`);
    assert.equal(part.args.username, "Customer Service");
  }
  // Every line, whole and in order, escaped: no half entity, no raw < or &, nothing cut.
  const shown = parts.map((p) => blockTexts(p).join("\n")).join("\n");
  assert.doesNotMatch(shown, /The answer was cut/);
  assert.doesNotMatch(shown, /<|&(?!amp;|lt;|gt;)/);
  const unescaped = shown.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
  assert.equal(unescaped, ANSWER);
});
