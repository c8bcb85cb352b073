import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { CHANNEL, type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForApprovalCard } from "../support/observe.ts";
import { directRefundScript, finishedTask, taskOfThread } from "../support/scripts-humans.ts";
import { blockActionsPayload } from "../support/slack-signing.ts";
import { runBaton } from "../support/slash-command.ts";

let h: Harness;
let threadTs: string;
let taskId: string;
before(async () => {
  h = await startHarness({ script: scriptByAgent(directRefundScript()) });
  // Slack sends message text with &, < and > escaped: the person typed "Tom & Jerry <3".
  const { ts } = await h.mention("billing: please refund order 1077, Tom &amp; Jerry &lt;3");
  threadTs = ts;
  const approval = await waitForApprovalCard(h);
  await h.click(
    blockActionsPayload({
      userId: "U0LEE",
      actionId: APPROVAL_APPROVE,
      value: approval.id,
      channel: CHANNEL,
      messageTs: approval.card_ts ?? "",
      threadTs: ts,
    }),
  );
  await h.until("the task to finish", () => finishedTask(h.db.db, ts));
  const task = await taskOfThread(h.db.db, ts);
  assert.ok(task);
  taskId = task.id;
});
after(async () => {
  await h.close();
});

const baton = (text: string) => runBaton(h, text);

test("text Slack sent escaped is shown as the person typed it, not double-escaped", async () => {
  const answer = await baton(`status ${taskId}`);
  // Slack shows "&amp;" as "&": the title must reach Slack escaped once.
  assert.doesNotMatch(answer.text, /&amp;amp;|&amp;lt;/, answer.text);
  assert.match(answer.text, /Tom &amp; Jerry &lt;3/);
  void threadTs;
});

test("/baton audit names the person who decided as a mention, not as escaped token text", async () => {
  const answer = await baton(`audit ${taskId}`);
  assert.doesNotMatch(answer.blocks, /&lt;@U0LEE&gt;/, "the approver is shown as literal <@U0LEE>");
  assert.match(answer.blocks, /<@U0LEE>/);
});
