import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { clip, plainText } from "../../src/slack/mrkdwn.ts";
import { digestMessage } from "../../src/slack/views/digest.ts";
import { CHANNEL, type Harness, SIGNING_SECRET, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { whereIsMyOrderScript } from "../support/scripts.ts";
import { finishedTask } from "../support/scripts-humans.ts";
import { deliverCommand } from "../support/slack-signing.ts";

// U+202E RIGHT-TO-LEFT OVERRIDE reverses the display of everything after it on the line (until a
// U+202C or the paragraph's end): a customer's title followed by Baton's own words can make them
// read backwards, or spoof them. U+2066..U+2069 and U+200E/F act alike.
const RLO = "\u202E";
const BIDI = /[\u202A-\u202E\u2066-\u2069]/;

test("clip and plainText drop bidi embeddings, overrides and isolates", () => {
  assert.ok(!BIDI.test(clip(`order 1042 ${RLO}gnp.exe`, 100)), "clip kept U+202E");
  assert.ok(!BIDI.test(plainText(`order 1042 ${RLO}gnp.exe`, 100)), "plainText kept U+202E");
});

test("a digest row: a title with U+202E cannot reverse the owner and date after it", () => {
  const at = new Date("2025-03-04T10:42:00Z").toISOString();
  const message = digestMessage({
    audience: "channel",
    asOf: at,
    staleAfterMs: 86_400_000,
    approvalStaleAfterMs: 3_600_000,
    staleTasks: [
      { title: `where is 1042 ${RLO}`, owner: { kind: "human", id: "U0ANN" }, lastActivityAt: at },
    ],
    staleApprovals: [],
    failedTasks: [],
  });
  const row = JSON.stringify(message.blocks).match(/"text":"(\*where is 1042[^"]*)"/)?.[1] ?? "";
  assert.ok(!BIDI.test(row), `the row carries an unterminated override before <@U0ANN>: ${row}`);
});

let h: Harness;
before(async () => {
  h = await startHarness({ script: scriptByAgent(whereIsMyOrderScript()) });
});
after(async () => {
  await h.close();
});

test("/baton status: a title with U+202E cannot reverse 'owned by …'", async () => {
  const { ts } = await h.mention(`${RLO}where is order 1042?`);
  await h.until("flow 1 to finish", () => finishedTask(h.db.db, ts), 20_000);
  await deliverCommand(h.endpoint, SIGNING_SECRET, {
    command: "/baton",
    text: "status 1042",
    user_id: "U0OPS",
    channel_id: CHANNEL,
    response_url: h.slack.responseUrl,
  });
  const reply = await h.until("the answer", async () => h.slack.callsTo("response_url")[0]);
  const first = String(reply.args.text).split("\n")[0] ?? "";
  assert.ok(
    !BIDI.test(first),
    `status line carries an unterminated override: ${JSON.stringify(first)}`,
  );
});
