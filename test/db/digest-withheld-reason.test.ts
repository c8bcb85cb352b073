import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type AgentsFile, agentsFileSchema } from "../../src/config/agents-schema.ts";
import type { ChatIntent } from "../../src/core/ports.ts";
import type { Db } from "../../src/db/database.ts";
import { createLogger } from "../../src/log.ts";
import { runDigest } from "../../src/runtime/digest.ts";
import { messageLink } from "../../src/slack/chat-surface.ts";
import { digestMessage } from "../../src/slack/views/digest.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { recordingChat } from "../support/recording-chat.ts";

// A failure reason can carry a tool's or a model's error text, and with it the customer's words.
// The channel digest withheld the title of a task from another conversation but showed its reason.

const NOW = new Date("2025-01-06T09:00:00Z");
const ago = (hours: number) => new Date(NOW.getTime() - hours * 3_600_000);
const link = (channel: string, ts: string) => messageLink("https://acme.slack.com/", channel, ts);
const log = createLogger({ level: "silent" });
const agentsFile: AgentsFile = agentsFileSchema.parse({
  agents: [{ id: "cs", name: "Customer Service", icon: ":wave:", instructions: "Help." }],
  digest: { channel: "C0DIGEST", stale_after: "24h", approval_stale_after: "4h" },
});
const LEAK = "lookup_card failed: card 4111 1111 1111 1111 of Bob Smith was declined";

let database: TestDatabase;
before(async () => {
  database = await createTestDatabase();
});
after(() => database.drop());

let n = 0;
async function failedTask(db: Db, title: string, channel: string, reason: string) {
  await db
    .insertInto("tasks")
    .values({
      channel_id: channel,
      thread_ts: `1736000000.${String(++n).padStart(6, "0")}`,
      requester_id: "U0DANA",
      title,
      request_text: title,
      status: "failed",
      owner_kind: "human",
      owner_id: "U0ANN",
      handback_stack: "[]",
      facts: "{}",
      cost_usd: 0,
      last_activity_at: ago(2),
      closed_at: ago(2),
      failure_reason: reason,
    })
    .execute();
}

test("the channel digest withholds a withheld task's failure reason; its owner's DM keeps it", async () => {
  const { db } = database;
  await failedTask(db, "my card was charged twice", "D0DANA", LEAK);
  await failedTask(db, "complaint about my manager", "C0HR", LEAK);
  await failedTask(db, "where is order 1042?", "C0DIGEST", "the model server did not answer");

  const { chat, sent } = recordingChat(link);
  await runDigest(
    { db, log, clock: { now: () => NOW }, agentsFile, chat, threadLink: link },
    NOW,
    "a",
  );

  const channel = sent.find((i) => i.kind === "digest")?.digest;
  assert.ok(channel);
  const shown = JSON.stringify([channel, digestMessage(channel)]);
  assert.ok(!shown.includes("4111") && !shown.includes("Bob Smith"), shown);
  assert.match(shown, /the model server did not answer/, "a task the channel may read keeps it");
  assert.equal(channel.failedTasks.length, 3, "each still listed, with its age and link");
  assert.ok(channel.failedTasks.every((f) => f.failedAt && f.link));

  const ann = sent.find(
    (i): i is Extract<ChatIntent, { kind: "digest_dm" }> =>
      i.kind === "digest_dm" && i.user === "U0ANN",
  )?.digest;
  assert.ok(ann);
  assert.equal(ann.failedTasks.filter((f) => f.reason === LEAK).length, 2, "the owner reads both");
});
