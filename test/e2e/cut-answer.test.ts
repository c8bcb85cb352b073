import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { auditJson, auditStory } from "../../src/runtime/audit-story.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { finishedTask } from "../support/scripts-humans.ts";

// An answer longer than the thread's messages hold is cut with a note: the note sends the reader
// where the rest really is, and the rest is there.

const LINE = "Order 1042: shipped, tracking pending, ETA 3 days (ref A&B).\n";
/** Past the 8 messages of an answer: about 64,000 characters. */
const ANSWER = LINE.repeat(1_050).trim();

let h: Harness;
before(async () => {
  h = await startHarness({ script: () => ({ content: ANSWER }) });
});
after(async () => {
  await h.close();
});

test("a cut answer's note points to where the whole answer is, and it is all there", async () => {
  const { ts } = await h.mention("list my orders");
  const task = await h.until("the answer", () => finishedTask(h.db.db, ts));
  const posts = h.slack.callsTo("chat.postMessage").map((c) => JSON.stringify(c.args.blocks ?? []));
  const note = posts.find((p) => p.includes("The answer was cut here"));
  assert.ok(note, "the last part is cut with a note");
  assert.match(note, /npm run audit -- \S+ --format json/);
  assert.doesNotMatch(note, /\/baton audit/, "Slack's audit story shows a few lines of it");
  const [answer] = JSON.parse(auditJson((await auditStory(h.baton.deps, task.id)).entries)).filter(
    (e: { kind: string }) => e.kind === "answer",
  );
  assert.equal(answer?.data.text, ANSWER);
});
