import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { whereIsMyOrderScript } from "../support/scripts.ts";
import { finishedTask } from "../support/scripts-humans.ts";
import { runBaton } from "../support/slash-command.ts";

// A link a person typed reaches Baton as Slack's markup, `<https://…|label>`: where Baton shows the
// task's title back, it reads as they typed it, never as the markup (App Home, the digest and the
// audit story: test/slack-typed-text.test.ts).

const TYPED = "where is order 1042? see <https://example.com/x|my order>";
const SHOWN = "where is order 1042? see my order (https://example.com/x)";

let h: Harness;
before(async () => {
  h = await startHarness({ script: scriptByAgent(whereIsMyOrderScript()) });
  const { ts } = await h.mention(TYPED);
  await h.until("flow 1 to finish", () => finishedTask(h.db.db, ts));
});
after(async () => {
  await h.close();
});

test("/baton status shows a typed link in the title as the person typed it", async () => {
  const answer = await runBaton(h, "status 1042");
  assert.ok(answer.text.includes(`*${SHOWN}*`), answer.text);
  assert.doesNotMatch(answer.text, /&lt;https|\|my order/);
});
