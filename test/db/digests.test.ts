import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sql } from "kysely";
import { type AgentsFile, agentsFileSchema } from "../../src/config/agents-schema.ts";
import type { ChatIntent, ChatSurface } from "../../src/core/ports.ts";
import type { Db } from "../../src/db/database.ts";
import { createLogger } from "../../src/log.ts";
import { type DigestDeps, runDigest } from "../../src/runtime/digest.ts";
import { startScheduler } from "../../src/runtime/scheduler.ts";
import { messageLink } from "../../src/slack/chat-surface.ts";
import { digestMessage } from "../../src/slack/views/digest.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { emulatedChat, WORKSPACE_URL } from "../support/emulated-chat.ts";
import { recordingChat } from "../support/recording-chat.ts";
import { type SlackEmulator, startSlackEmulator } from "../support/slack-emulator.ts";

// The daily digest's database side: DM links, a redelivery, a withheld reason, a late firing.
// One suite per former test file.

describe("digest-dm-links", async () => {
  // A task asked in a direct message lives in a thread only its requester can open. Its escalation
  // card is where the person holding it works (policies.decisions_channel): the digest linked the
  // DM instead, for the channel and for the holder alike.

  // Around the test's now: the digest judges by the database's clock, hours from any threshold.
  const NOW = new Date();
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
    await runDigest({ db, log, agentsFile, chat, threadLink: link }, NOW, "a");

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
});

describe("digest-redelivery", async () => {
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

  const deps = (withChat: boolean): DigestDeps => ({
    db: database.db,
    log,
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
    const first = await runDigest(deps(false), FIRST, "replica-a");
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
    const second = await runDigest(deps(true), next, "replica-b");
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
});

describe("digest-withheld-reason", async () => {
  // A failure reason can carry a tool's or a model's error text, and with it the customer's words.
  // The channel digest withheld the title of a task from another conversation but showed its reason.

  // Around the test's now: the digest judges by the database's clock, hours from any threshold.
  const NOW = new Date();
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
    await runDigest({ db, log, agentsFile, chat, threadLink: link }, NOW, "a");

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
    assert.equal(
      ann.failedTasks.filter((f) => f.reason === LEAK).length,
      2,
      "the owner reads both",
    );
  });
});

describe("digest-late", async () => {
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

  /** A replica's scheduler as src/start/workers.ts starts it, at `now` on a fake clock. */
  function replica(name: string, now: Date, chat: ChatSurface, fired: Date[]) {
    const digestDeps = {
      db: database.db,
      log,
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
      [
        "the later of two today",
        "2025-01-06T15:00:00Z",
        "2025-01-06T14:00:00.000Z",
        "0 9,15 * * *",
      ],
    ];
    for (const [when, now, expected, schedule] of cases)
      assert.equal(await firedLate(now, schedule), expected, when);
  });
});
