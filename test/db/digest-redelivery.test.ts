import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { sql } from "kysely";
import { type AgentsFile, agentsFileSchema } from "../../src/config/agents-schema.ts";
import type { ChatIntent, ChatSurface } from "../../src/core/ports.ts";
import { createLogger } from "../../src/log.ts";
import { type DigestDeps, runDigest } from "../../src/runtime/digest.ts";
import { messageLink } from "../../src/slack/chat-surface.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { emulatedChat, WORKSPACE_URL } from "../support/emulated-chat.ts";
import { type SlackEmulator, startSlackEmulator } from "../support/slack-emulator.ts";

// A digest is not in a thread: a run that finds one of its rows unmarked looks for it in the
// conversation's history, by the outbox id in its metadata, before it posts it.

const DAY = 86_400_000;
const FIRST = new Date("2025-01-06T09:00:00Z");
const log = createLogger({ level: "silent" });
const agentsFile: AgentsFile = agentsFileSchema.parse({
  agents: [{ id: "cs", name: "Customer Service", icon: ":wave:", instructions: "Help." }],
  digest: { channel: "C0DIGEST", stale_after: "24h", approval_stale_after: "4h" },
});

let database: TestDatabase;
let slack: SlackEmulator;
let chat: ChatSurface;
before(async () => {
  database = await createTestDatabase();
  slack = await startSlackEmulator();
  chat = emulatedChat(slack, log);
});
after(async () => {
  await slack.close();
  await database.drop();
});

const deps = (at: Date, withChat: boolean): DigestDeps => ({
  db: database.db,
  log,
  clock: { now: () => at },
  agentsFile,
  ...(withChat && { chat }),
  threadLink: (channel, ts) => messageLink(WORKSPACE_URL, channel, ts),
});

/** Every post of an outbox row, by the id in its metadata. */
function postsByOutboxId(): Map<string, number> {
  const posts = new Map<string, number>();
  for (const call of slack.callsTo("chat.postMessage")) {
    const id = (call.args.metadata as { event_payload?: { outbox_id?: string } } | undefined)
      ?.event_payload?.outbox_id;
    if (id !== undefined) posts.set(id, (posts.get(id) ?? 0) + 1);
  }
  return posts;
}

test("a digest Slack took before its process died is not posted again by the next run", async () => {
  await database.db
    .insertInto("tasks")
    .values({
      channel_id: "C0SUPPORT",
      thread_ts: "1736000000.000001",
      requester_id: "U0DANA",
      title: "Refund order 1042",
      request_text: "Refund order 1042",
      status: "active",
      owner_kind: "human",
      owner_id: "U0ANN",
      handback_stack: "[]",
      facts: "{}",
      cost_usd: 0,
      created_at: new Date(FIRST.getTime() - 3 * DAY),
      last_activity_at: new Date(FIRST.getTime() - 2 * DAY),
    })
    .execute();

  // The first firing queues the channel digest and Ann's DM. Its process posts the channel digest,
  // Slack takes it, and the process dies before it marks the row sent: the DM never went out.
  const first = await runDigest(deps(FIRST, false), FIRST, "replica-a");
  assert.equal(first.claimed, true);
  const rows = await database.db
    .selectFrom("slack_outbox")
    .select(["id", "method", "payload"])
    .orderBy("id")
    .execute();
  assert.deepEqual(
    rows.map((r) => r.method),
    ["digest", "digest_dm"],
  );
  const [channelRow, dmRow] = rows;
  assert.ok(channelRow && dmRow);
  const intent = (channelRow.payload as unknown as { intent: ChatIntent }).intent;
  const taken = await chat.deliver(intent, String(channelRow.id));
  // The next firing is a day later.
  await sql`update slack_outbox set created_at = created_at - interval '1 day'`.execute(
    database.db,
  );

  const next = new Date(FIRST.getTime() + DAY);
  const second = await runDigest(deps(next, true), next, "replica-b");
  assert.equal(second.claimed, true);

  const posts = postsByOutboxId();
  assert.equal(posts.get(String(channelRow.id)), 1, "the digest Slack took is not posted again");
  assert.equal(posts.get(String(dmRow.id)), 1, "the DM that never went out is sent once");
  const after = await database.db
    .selectFrom("slack_outbox")
    .select(["id", "status", "slack_ts"])
    .orderBy("id")
    .execute();
  assert.ok(after.every((r) => r.status === "sent"));
  assert.equal(after[0]?.slack_ts, taken.ts, "the row is marked with the message Slack took");
  assert.equal(after.length, 4, "the next firing's own digest and DM");
  assert.equal(
    [...posts.values()].reduce((a, b) => a + b),
    4,
    "four posts for four rows",
  );
  assert.equal(slack.messagesIn("C0DIGEST").length, 2, "one channel digest per firing");
  const looked = slack.callsTo("conversations.history");
  assert.ok(looked.some((c) => c.args.channel === "C0DIGEST"));
});
