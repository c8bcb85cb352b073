import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type AgentsFile, agentsFileSchema } from "../../src/config/agents-schema.ts";
import { homeData } from "../../src/db/home.repository.ts";
import { createLogger } from "../../src/log.ts";
import { runDigest } from "../../src/runtime/digest.ts";
import { digestMessage } from "../../src/slack/views/digest.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { recordingChat } from "../support/recording-chat.ts";

// A lane naming several people escalates to all of them: the task's owner_id is the list
// "U0ANN,U0BOB" (escalations.ts). Each of them sees it in their App Home and their digest DM.

const NOW = new Date("2025-01-06T09:00:00Z");
const agentsFile: AgentsFile = agentsFileSchema.parse({
  agents: [{ id: "cs", name: "Customer Service", icon: ":wave:", instructions: "Help." }],
  digest: { channel: "C0DIGEST", stale_after: "24h" },
});

let database: TestDatabase;
let taskId: string;
before(async () => {
  database = await createTestDatabase();
  const row = await database.db
    .insertInto("tasks")
    .values({
      channel_id: "C0DIGEST",
      thread_ts: "1736000000.000001",
      requester_id: "U0DANA",
      title: "Lamp caught fire",
      request_text: "Lamp caught fire",
      status: "waiting_human",
      owner_kind: "human",
      owner_id: "U0ANN,U0BOB",
      handback_stack: "[]",
      facts: "{}",
      cost_usd: 0,
      created_at: new Date(NOW.getTime() - 200 * 3_600_000),
      last_activity_at: new Date(NOW.getTime() - 30 * 3_600_000),
    })
    .returning("id")
    .executeTakeFirstOrThrow();
  taskId = row.id;
});
after(() => database.drop());

test("App Home: a task escalated to several people is among each one's open tasks", async () => {
  const data = await homeData(database.db, "U0ANN", []);
  assert.ok(
    data.openTasks.some((t) => t.id === taskId),
    "U0ANN, one of its owners, sees it",
  );
});

test("digest: each of several owners gets the stale task in their own DM", async () => {
  const { chat, sent } = recordingChat(
    () => "https://acme.slack.com/archives/C0DIGEST/p1736000000000001",
  );
  await runDigest(
    {
      db: database.db,
      log: createLogger({ level: "silent" }),
      asOf: NOW,
      agentsFile,
      chat,
      threadLink: chat.threadLink,
    },
    NOW,
    "replica-a",
  );
  const channel = sent.find((i) => i.kind === "digest");
  assert.ok(channel && channel.kind === "digest");
  const dms = sent.filter((i) => i.kind === "digest_dm").map((i) => (i as { user: string }).user);
  assert.deepEqual(dms.sort(), ["U0ANN", "U0BOB"], "each owner gets the stale task in a DM");
  const text = JSON.stringify(digestMessage(channel.digest).blocks);
  assert.match(text, /<@U0ANN>, <@U0BOB>/, "the owners are mentioned, each");
});
