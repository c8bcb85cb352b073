import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type AgentsFile, agentsFileSchema } from "../../src/config/agents-schema.ts";
import type { ChatIntent } from "../../src/core/ports.ts";
import type { Db } from "../../src/db/database.ts";
import { createLogger } from "../../src/log.ts";
import { runDigest } from "../../src/runtime/digest.ts";
import { messageLink } from "../../src/slack/chat-surface.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { recordingChat } from "../support/recording-chat.ts";

// A task asked in a direct message lives in a thread only its requester can open. Its escalation
// card is where the person holding it works (policies.decisions_channel): the digest linked the
// DM instead, for the channel and for the holder alike.

const NOW = new Date("2025-01-06T09:00:00Z");
const HOUR = 3_600_000;
const ago = (hours: number) => new Date(NOW.getTime() - hours * HOUR);
const WORKSPACE = "https://acme.slack.com/";
const link = (channel: string, ts: string) => messageLink(WORKSPACE, channel, ts);
const log = createLogger({ level: "silent" });
const agentsFile: AgentsFile = agentsFileSchema.parse({
  agents: [{ id: "cs", name: "Customer Service", icon: ":wave:", instructions: "Help." }],
  policies: { decisions_channel: "C0DECIDE" },
  digest: { channel: "C0DIGEST", stale_after: "24h", approval_stale_after: "4h" },
});

let database: TestDatabase;
before(async () => {
  database = await createTestDatabase();
});
after(() => database.drop());

let n = 0;
async function dmTask(db: Db, title: string, owner: string, failed = false) {
  return db
    .insertInto("tasks")
    .values({
      channel_id: "D0DANA",
      thread_ts: `1736000000.${String(++n).padStart(6, "0")}`,
      requester_id: "U0DANA",
      title,
      request_text: title,
      status: failed ? "failed" : "waiting_human",
      owner_kind: "human",
      owner_id: owner,
      handback_stack: "[]",
      facts: "{}",
      cost_usd: 0,
      last_activity_at: ago(30),
      closed_at: failed ? ago(2) : null,
      failure_reason: failed ? "the model server did not answer" : null,
    })
    .returning(["id", "channel_id", "thread_ts"])
    .executeTakeFirstOrThrow();
}

/** An escalation taken over from its card in the decisions channel. */
async function escalationCard(db: Db, taskId: string, holder: string, cardTs: string) {
  await db
    .insertInto("escalations")
    .values({
      task_id: taskId,
      step_no: 1,
      from_agent: "cs",
      note: "{}",
      owner: JSON.stringify({ kind: "human", id: holder }),
      status: "taken_over",
      decided_by: holder,
      decided_at: ago(29),
      respond_by: ago(20),
      card_channel: "C0DECIDE",
      card_ts: cardTs,
      created_at: ago(30),
    })
    .execute();
}

test("a DM's task in the digest links to its card; without one, to its thread", async () => {
  const { db } = database;
  const held = await dmTask(db, "lamp caught fire", "U0ANN");
  await escalationCard(db, held.id, "U0ANN", "1736000500.000001");
  const failed = await dmTask(db, "refund order 1077", "U0ANN", true);
  await escalationCard(db, failed.id, "U0ANN", "1736000600.000001");
  const cardless = await dmTask(db, "where is order 1042", "U0BOB");

  const { chat, sent } = recordingChat(link);
  await runDigest(
    { db, log, clock: { now: () => NOW }, agentsFile, chat, threadLink: link },
    NOW,
    "a",
  );

  const channel = sent.find((i) => i.kind === "digest")?.digest;
  const ann = sent.find(
    (i): i is Extract<ChatIntent, { kind: "digest_dm" }> =>
      i.kind === "digest_dm" && i.user === "U0ANN",
  )?.digest;
  const cardLink = link("C0DECIDE", "1736000500.000001");
  assert.equal(ann?.staleTasks[0]?.link, cardLink, "the holder is sent to the card");
  assert.equal(ann?.failedTasks[0]?.link, link("C0DECIDE", "1736000600.000001"));
  assert.deepEqual(
    channel?.staleTasks.map((t) => t.link),
    [cardLink, link(cardless.channel_id, cardless.thread_ts)],
    "the channel too; a task with no card keeps its thread",
  );
});
