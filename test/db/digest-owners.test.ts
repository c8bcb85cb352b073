import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { sql } from "kysely";
import { type AgentsFile, agentsFileSchema } from "../../src/config/agents-schema.ts";
import type { DigestInput } from "../../src/core/digest.ts";
import type { ChatIntent } from "../../src/core/ports.ts";
import type { Db } from "../../src/db/database.ts";
import { createLogger } from "../../src/log.ts";
import { type DigestDeps, runDigest } from "../../src/runtime/digest.ts";
import { messageLink } from "../../src/slack/chat-surface.ts";
import { digestMessage } from "../../src/slack/views/digest.ts";
import { databaseForFile } from "../support/db.ts";
import { emulatedChat } from "../support/emulated-chat.ts";
import { warnings } from "../support/observe.ts";
import { recordingChat } from "../support/recording-chat.ts";
import { type SlackEmulator, startSlackEmulator } from "../support/slack-emulator.ts";

// Who hears of what in the digest: a lane's channel, failures once each, and who cannot be DMed.

const NOW = new Date();
const HOUR = 3_600_000;
const ago = (hours: number) => new Date(NOW.getTime() - hours * HOUR);
const log = createLogger({ level: "silent" });
const threadLink = (channel: string, ts: string) =>
  messageLink("https://acme.slack.com/", channel, ts);

const agentsFile = (digest: object): AgentsFile =>
  agentsFileSchema.parse({
    agents: [{ id: "cs", name: "Customer Service", icon: ":wave:", instructions: "Help." }],
    digest: { stale_after: "24h", approval_stale_after: "4h", ...digest },
  });

/** What the digest is given: the shop's channel, unless `digest` says otherwise. */
const digestDeps = (
  db: Db,
  chat: DigestDeps["chat"],
  digest: object = { channel: "C0SHOP" },
): DigestDeps => ({ db, log, agentsFile: agentsFile(digest), chat, threadLink });

let thread = 0;
async function task(
  db: Db,
  title: string,
  values: { owner: string; channel: string; lastActivity: Date; failed?: boolean },
) {
  const [ownerKind = "agent", ownerId = "cs"] = values.owner.split(":");
  await db
    .insertInto("tasks")
    .values({
      channel_id: values.channel,
      thread_ts: `1736000000.${String(++thread).padStart(6, "0")}`,
      requester_id: "U0DANA",
      title,
      request_text: title,
      status: values.failed ? "failed" : "waiting_human",
      owner_kind: ownerKind,
      owner_id: ownerId,
      handback_stack: "[]",
      facts: "{}",
      cost_usd: 0,
      last_activity_at: values.lastActivity,
      closed_at: values.failed ? ago(1) : null,
      failure_reason: values.failed ? "the order system did not answer" : null,
    })
    .execute();
}

type Digest = Extract<ChatIntent, { kind: "digest" }>;
const postsTo = (sent: ChatIntent[], channel: string) =>
  sent.filter((i): i is Digest => i.kind === "digest" && i.channel === channel);

describe("work a lane's channel owns", () => {
  const database = databaseForFile();

  // An escalation to a lane that names nobody (or to a lane the agents file leaves out) is owned
  // by a channel's members. Before, no one got it: no DM, and nothing without a digest channel.
  test("is posted to that channel, with its words, and to no other", async () => {
    const { db } = database;
    await task(db, "Lamp caught fire", {
      owner: "human:C0SUPPORT",
      channel: "C0SUPPORT",
      lastActivity: ago(30),
    });
    await task(db, "Refund stuck", {
      owner: "human:C0OPS",
      channel: "C0SHOP",
      lastActivity: ago(1),
      failed: true,
    });
    await task(db, "Where is 1042", {
      owner: "human:U0ANN",
      channel: "C0SHOP",
      lastActivity: ago(30),
    });
    const { chat, sent } = recordingChat(threadLink);
    const deps = digestDeps(db, chat, {});
    await runDigest(deps, NOW, "replica-a");

    const [support, ...more] = postsTo(sent, "C0SUPPORT");
    assert.equal(more.length, 0);
    assert.deepEqual(
      support?.digest.staleTasks.map((t) => t.title),
      ["Lamp caught fire"],
    );
    assert.deepEqual(support?.digest.failedTasks, []);
    const ops = postsTo(sent, "C0OPS")[0]?.digest;
    assert.deepEqual(
      ops?.failedTasks.map((f) => [f.title, f.reason]),
      [["Refund stuck", "the order system did not answer"]],
    );
    assert.deepEqual(ops?.staleTasks, []);
    assert.equal(postsTo(sent, "C0SHOP").length, 0, "the thread's channel does not own them");
    assert.ok(support);
    const words = JSON.stringify(digestMessage(support.digest).blocks);
    assert.match(words, /this channel/);
    assert.doesNotMatch(words, /Your Baton digest/);
  });
});

describe("a digest sent late", () => {
  const database = databaseForFile();

  // Baton was down at the digest's time and its first replica sent it hours late: the next day's
  // counted failures from the late one's slot, so those it had reported came back.
  test("its failures are not reported again by the next", async () => {
    const { db } = database;
    await task(db, "Refund stuck", {
      owner: "human:U0ANN",
      channel: "C0SHOP",
      lastActivity: ago(1),
      failed: true,
    });
    const { chat, sent } = recordingChat(threadLink);
    const deps = digestDeps(db, chat);
    const late = await runDigest(deps, ago(5), "replica-a");
    assert.equal(late.failedTasks, 1);
    const next = await runDigest(deps, new Date(NOW.getTime() + 60_000), "replica-a");
    assert.equal(next.failedTasks, 0);
    const posts = sent.filter((i): i is Digest => i.kind === "digest");
    assert.deepEqual(
      posts.map((p) => p.digest.failedTasks.length),
      [1, 0],
    );
  });
});

describe("a team with more stale work than the channel lists", () => {
  const database = databaseForFile();

  // Tasks nobody closes stay idle: past 200 of them, work that had just gone stale reached no
  // one's DM, as the DMs were cut from the channel's list of the oldest 200.
  // 205 idle tasks of U0OLD's and one just stale of U0NEW's, for each test of this describe.
  before(async () => {
    for (let i = 0; i < 205; i++)
      await task(database.db, `Old question ${i}`, {
        owner: "human:U0OLD",
        channel: "C0SHOP",
        lastActivity: ago(500 - i),
      });
    await task(database.db, "Lamp caught fire", {
      owner: "human:U0NEW",
      channel: "C0SHOP",
      lastActivity: ago(30),
    });
  });

  test("each owner still hears of theirs", async () => {
    const { db } = database;
    const { chat, sent } = recordingChat(threadLink);
    const deps = digestDeps(db, chat);
    await runDigest(deps, NOW, "replica-a");

    const dm = (user: string) =>
      sent.find((i) => i.kind === "digest_dm" && i.user === user) as
        | Extract<ChatIntent, { kind: "digest_dm" }>
        | undefined;
    assert.deepEqual(
      dm("U0NEW")?.digest.staleTasks.map((t) => t.title),
      ["Lamp caught fire"],
    );
    const old = dm("U0OLD")?.digest;
    assert.equal(old?.staleTasks.length, 200);
    assert.equal(old?.capped?.staleTasks, true, "theirs are more than listed");
    const channel = postsTo(sent, "C0SHOP")[0]?.digest;
    assert.equal(channel?.staleTasks.length, 200, "the channel's list stays as long as it was");
    assert.equal(channel?.capped?.staleTasks, true);
  });

  // The heading said "(200+)" and the line below "+188 more not shown": 205 were theirs.
  test("its count and its more line say how many there are", async () => {
    const { db } = database;
    const { chat, sent } = recordingChat(threadLink);
    const deps = digestDeps(db, chat);
    await runDigest(deps, new Date(NOW.getTime() + 60_000), "replica-a");
    const told = (digest: DigestInput | undefined) => {
      assert.ok(digest);
      const words = JSON.stringify(digestMessage(digest).blocks);
      const shown = digest.staleTasks.filter((t) => words.includes(`*${t.title}*`)).length;
      const more = Number(words.match(/\+(\d+) more not shown/)?.[1]);
      return { heading: words.match(/\* \((\d+\+?)\)/)?.[1], all: shown + more };
    };
    const dm = sent.find((i) => i.kind === "digest_dm" && i.user === "U0OLD");
    assert.deepEqual(told(dm?.kind === "digest_dm" ? dm.digest : undefined), {
      heading: "205",
      all: 205,
    });
    assert.deepEqual(told(postsTo(sent, "C0SHOP")[0]?.digest), { heading: "206", all: 206 });
  });
});

describe("a person Slack will not let Baton DM", () => {
  const database = databaseForFile();
  let slack: SlackEmulator;
  before(async () => {
    slack = await startSlackEmulator({
      users: [
        { id: "U0ANN", name: "ann" },
        { id: "U0GONE", name: "gone", deleted: true },
      ],
    });
  });
  after(async () => {
    await slack.close();
    await database.drop();
  });

  const dmsTo = (user: string) =>
    database.db
      .selectFrom("slack_outbox")
      .select(["status", "error"])
      .where("method", "=", "digest_dm")
      .where(sql<string>`payload -> 'intent' ->> 'user'`, "=", user)
      .orderBy("id")
      .execute();

  // A deactivated owner's digest DM was refused (dead) every day, then queued again the next day,
  // for ever: one more dead row and refused call a day per person who left.
  test("is left out of the next digests after a refusal, said in the log, and tried again a week on", async () => {
    const { db } = database;
    for (const owner of ["U0ANN", "U0GONE"])
      await task(db, `Question for ${owner}`, {
        owner: `human:${owner}`,
        channel: "C0SHOP",
        lastActivity: ago(30),
      });
    const { lines: warned, log: warnLog } = warnings();
    const deps = { ...digestDeps(db, emulatedChat(slack, log)), log: warnLog };
    const DAY = 24 * HOUR;
    const first = await runDigest(deps, NOW, "replica-a");
    assert.equal(first.directMessages, 2);
    const [refused, ...more] = await dmsTo("U0GONE");
    assert.equal(more.length, 0);
    assert.equal(refused?.status, "dead");
    assert.match(refused?.error ?? "", /user_disabled$/);

    const next = await runDigest(deps, new Date(NOW.getTime() + DAY), "replica-a");
    assert.equal(next.directMessages, 1, "Ann's only");
    assert.equal(next.refusedDirectMessages, 1);
    assert.equal((await dmsTo("U0GONE")).length, 1, "not queued to be refused again");
    assert.equal((await dmsTo("U0ANN")).filter((r) => r.status === "sent").length, 2);
    const opened = slack.callsTo("conversations.open").filter((c) => c.args.users === "U0GONE");
    assert.equal(opened.length, 1, "Slack is not asked again");
    const said = warned.find((line) => Array.isArray(line.refused))?.refused ?? [];
    assert.deepEqual(
      (said as { user: string; slackError: string }[]).map((r) => [r.user, r.slackError]),
      [["U0GONE", "user_disabled"]],
      "the operator reads who was left out, and why",
    );

    // A week on, back at work (reactivated): the digest tries again, and reaches them.
    await sql`update slack_outbox set created_at = created_at - interval '7 days'`.execute(db);
    slack.setUser({ id: "U0GONE", name: "gone" });
    const week = await runDigest(deps, new Date(NOW.getTime() + 8 * DAY), "replica-a");
    assert.equal(week.directMessages, 2);
    assert.deepEqual(
      (await dmsTo("U0GONE")).map((r) => r.status),
      ["dead", "sent"],
    );
    assert.equal(slack.messagesIn(slack.dmChannelFor("U0GONE")).length, 1);
  });
});
