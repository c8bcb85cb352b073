import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type AgentsFile, agentsFileSchema } from "../../src/config/agents-schema.ts";
import type { ChatSurface } from "../../src/core/ports.ts";
import { createLogger } from "../../src/log.ts";
import { runDigest } from "../../src/runtime/digest.ts";
import { startScheduler } from "../../src/runtime/scheduler.ts";
import { messageLink } from "../../src/slack/chat-surface.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { recordingChat } from "../support/recording-chat.ts";

// Baton was down at 09:00 on a weekday and its replicas start at 11:30: the day's digest was
// never sent, as no firing was left for the scheduler to catch.

const SCHEDULE = "0 9 * * 1-5";
const TIMEZONE = "Europe/Paris";
// Monday 2025-01-06, 09:00 and 11:30 in Paris.
const NINE = new Date("2025-01-06T08:00:00Z");
const LATE = new Date("2025-01-06T10:30:00Z");
const log = createLogger({ level: "silent" });
const agentsFile: AgentsFile = agentsFileSchema.parse({
  agents: [{ id: "cs", name: "Customer Service", icon: ":wave:", instructions: "Help." }],
  digest: { channel: "C0DIGEST", schedule: SCHEDULE, timezone: TIMEZONE },
});

let database: TestDatabase;
before(async () => {
  database = await createTestDatabase();
  await database.db
    .insertInto("tasks")
    .values({
      channel_id: "C0DIGEST",
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
      last_activity_at: new Date("2025-01-03T10:00:00Z"),
    })
    .execute();
});
after(() => database.drop());

/** A replica's scheduler as app.ts starts it, at `now` on a fake clock. */
function replica(name: string, now: Date, chat: ChatSurface, fired: Date[]) {
  const digestDeps = {
    db: database.db,
    log,
    clock: { now: () => now },
    agentsFile,
    chat,
    threadLink: (channel: string, ts: string) => messageLink(undefined, channel, ts),
  };
  return startScheduler({
    schedule: SCHEDULE,
    timezone: TIMEZONE,
    log,
    name,
    now: () => now,
    run: async (fireAt) => {
      fired.push(fireAt);
      await runDigest(digestDeps, fireAt, name);
    },
  });
}

test("replicas starting at once after the digest's time send the missed digest once", async () => {
  const { chat, sent } = recordingChat((c, ts) => messageLink(undefined, c, ts));
  const fired: Date[] = [];
  const replicas = [replica("a", LATE, chat, fired), replica("b", LATE, chat, fired)];
  // Stopping waits for a late firing under way.
  await Promise.all(replicas.map((r) => r.stop()));

  assert.deepEqual(
    fired.map((d) => d.toISOString()),
    [NINE.toISOString(), NINE.toISOString()],
    "both fire today's 09:00, the key the scheduler would have used",
  );
  const runs = await database.db.selectFrom("scheduled_runs").select("fire_at").execute();
  assert.deepEqual(
    runs.map((r) => r.fire_at.toISOString()),
    [NINE.toISOString()],
  );
  assert.deepEqual(
    sent.map((i) => i.kind),
    ["digest", "digest_dm"],
    "one channel digest and Ann's DM",
  );

  // A replica started later the same day finds it sent.
  const later = replica("c", new Date("2025-01-06T13:00:00Z"), chat, fired);
  await later.stop();
  assert.equal(fired.length, 3);
  assert.equal(sent.length, 2, "nothing sent twice");
});

/** What a lone start at `now` fires late, without a database: the slot, or nothing. */
async function firedLate(now: string, schedule = SCHEDULE): Promise<string | undefined> {
  const fired: Date[] = [];
  const run = async (fireAt: Date) => {
    fired.push(fireAt);
  };
  const scheduler = startScheduler({
    schedule,
    timezone: TIMEZONE,
    log,
    now: () => new Date(now),
    run,
  });
  await scheduler.stop();
  return fired[0]?.toISOString();
}

test("only today's digest is sent late, and not when the next one is nearer", async () => {
  // Times in UTC; Paris is an hour ahead in January.
  const cases: [string, string, string | undefined, string?][] = [
    ["Friday evening", "2025-01-10T19:00:00Z", "2025-01-10T08:00:00.000Z"],
    ["the minute it was due", "2025-01-06T08:00:40Z", "2025-01-06T08:00:00.000Z"],
    ["before today's time: yesterday's is gone", "2025-01-07T07:30:00Z", undefined],
    ["a Saturday: Friday's is gone", "2025-01-11T10:00:00Z", undefined],
    ["just past midnight in Paris", "2025-01-06T23:30:00Z", undefined],
    ["nearer tomorrow's than today's", "2025-01-06T20:30:00Z", undefined],
    ["the later of two today", "2025-01-06T15:00:00Z", "2025-01-06T14:00:00.000Z", "0 9,15 * * *"],
  ];
  for (const [when, now, expected, schedule] of cases)
    assert.equal(await firedLate(now, schedule), expected, when);
});
