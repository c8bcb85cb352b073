import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { BLOCKS_TEXT_BUDGET } from "../../src/slack/mrkdwn.ts";
import { CHANNEL, type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { postsInThread } from "../support/observe.ts";
import { blockTexts, finishedTask } from "../support/scripts-humans.ts";
import { BLOCKS_TEXT_MAX, blocksTextChars } from "../support/slack-emulator.ts";

// A model that lists everything: 30,000 characters with & and <, more than Slack takes in one
// message's blocks (it refuses about 12,000 with msg_blocks_too_long, as the emulator does).
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

test("a 30,000-character answer shows in the thread, cut at a line, with a note", async () => {
  assert.deepEqual(
    h.slack.calls.filter((c) => c.failed).map((c) => `${c.method}: ${c.failed}`),
    [],
    "Slack refused nothing",
  );
  const answers = postsInThread(h.slack, threadTs).filter((c) =>
    blockTexts(c).some((t) => t.includes("Order 1042")),
  );
  assert.equal(answers.length, 1);
  const [answer] = answers;
  assert.ok(answer);
  const chars = blocksTextChars(answer.args.blocks);
  assert.ok(chars <= BLOCKS_TEXT_BUDGET && chars < BLOCKS_TEXT_MAX, `${chars} characters`);

  const texts = blockTexts(answer);
  const note = texts.at(-1) ?? "";
  assert.match(note, /The answer was cut here: [\d,]+ more characters did not fit/);
  // The task's history, by its thread's link, which `/baton audit` takes.
  const link = `/archives/${CHANNEL}/p${threadTs.replace(".", "")}`;
  assert.ok(note.includes("/baton audit https://") && note.includes(link), note);

  const shown = texts.slice(0, -1).join("\n");
  const escaped = LINE.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  assert.ok(shown.startsWith(`1. ${escaped}\n2. ${escaped}`), shown.slice(0, 200));
  // Cut between lines, so the last line shown is whole: no half entity, no raw < or &.
  assert.ok(shown.endsWith(escaped), shown.slice(-200));
  assert.doesNotMatch(shown, /<|&(?!amp;|lt;|gt;)/);
});
