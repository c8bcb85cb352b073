import assert from "node:assert/strict";
import { test } from "node:test";
import type { ProcessedCall } from "../src/db/reports.repository.ts";
import { whoProcessedWords } from "../src/slack/views/who-processed.ts";
import { assertWithinSlackLimits } from "./support/slack-limits.ts";

const AT = new Date("2025-03-04T10:42:00Z");
const call = (over: Partial<ProcessedCall>): ProcessedCall => ({
  taskId: "00000000-0000-4000-8000-000000000000",
  tool: "issue_refund",
  toolClass: "write",
  status: "done",
  agentId: "billing",
  args: { order_id: "1077" },
  allowedBy: null,
  approvalId: null,
  approver: null,
  decidedAt: null,
  decision: null,
  reason: null,
  at: AT,
  ...over,
});

test("/baton who's words: hostile arguments stay text, and calls past the room are counted", () => {
  const nasty = { note: `<!channel> <https://evil|bank> <@UEVIL1> ${"x".repeat(10_000)}` };
  const calls = Array.from({ length: 200 }, () => call({ args: nasty, tool: "<!here>" }));
  const text = whoProcessedWords(calls, undefined, () => "<@UEVIL1> & Co");
  assertWithinSlackLimits({ text, blocks: [] });
  assert.ok(!text.includes("<@UEVIL1>"), text);
  assert.ok(text.length <= 2_800, String(text.length));
  assert.match(text, /\n\+\d+ more not shown: `\/baton audit` tells the whole story\.$/);
});

test("/baton who's words: who approved or rejected, as a mention with the reason", () => {
  const approved = call({ approver: "U0LEE", decision: "approved", decidedAt: AT });
  const rejected = call({
    status: "rejected",
    approver: "U0LEE",
    decision: "rejected",
    decidedAt: AT,
    reason: "Not <eligible>",
  });
  const [yes, no] = whoProcessedWords([approved, rejected], "issue_refund", () => "Billing").split(
    "\n",
  );
  assert.match(
    yes ?? "",
    /\*Billing\* called `issue_refund` \(order_id="1077"\): done, approved by <@U0LEE> <!date/,
  );
  assert.match(no ?? "", /: not run, rejected by <@U0LEE> <!date[^>]+>: "Not &lt;eligible&gt;"$/);
  assert.equal(
    whoProcessedWords([], "<!here>", () => ""),
    "No &lt;!here&gt; tool calls for this reference.",
  );
});
