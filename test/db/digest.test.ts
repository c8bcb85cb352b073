import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { sql } from "kysely";
import { type AgentsFile, agentsFileSchema } from "../../src/config/agents-schema.ts";
import { isDigestEmpty } from "../../src/core/digest.ts";
import type { ChatIntent, ChatSurface } from "../../src/core/ports.ts";
import type { Db } from "../../src/db/database.ts";
import {
  databaseNow,
  failedTasksQuery,
  staleApprovalsQuery,
  staleTasksQuery,
} from "../../src/db/reports.repository.ts";
import { ConfigError } from "../../src/errors.ts";
import { createLogger } from "../../src/log.ts";
import { type DigestDeps, runDigest } from "../../src/runtime/digest.ts";
import { startScheduler } from "../../src/runtime/scheduler.ts";
import { messageLink } from "../../src/slack/chat-surface.ts";
import { digestMessage } from "../../src/slack/views/digest.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { recordingChat } from "../support/recording-chat.ts";

// The digest judges by the database's clock: rows are placed around the test's now, hours from
// any threshold, which no skew between the two clocks comes near.
const NOW = new Date();
const HOUR = 3_600_000;
const ago = (hours: number) => new Date(NOW.getTime() - hours * HOUR);
const log = createLogger({ level: "silent" });

const agentsFile: AgentsFile = agentsFileSchema.parse({
  agents: [
    { id: "cs", name: "Customer Service", icon: ":wave:", instructions: "Help." },
    { id: "billing", name: "Billing", icon: ":moneybag:", instructions: "Refunds." },
  ],
  digest: { channel: "C0DIGEST", stale_after: "24h", approval_stale_after: "4h" },
});

const fakeChat = () => recordingChat(threadLink);

let thread = 0;
async function task(
  db: Db,
  title: string,
  values: { status: string; owner: string; lastActivity: Date; closedAt?: Date; channel?: string },
) {
  const [ownerKind = "agent", ownerId = "cs"] = values.owner.split(":");
  const row = await db
    .insertInto("tasks")
    .values({
      // The team works where its digest goes, unless a test says otherwise.
      channel_id: values.channel ?? "C0DIGEST",
      thread_ts: `1736000000.${String(++thread).padStart(6, "0")}`,
      requester_id: "U0DANA",
      title,
      request_text: title,
      status: values.status,
      owner_kind: ownerKind,
      owner_id: ownerId,
      handback_stack: "[]",
      facts: "{}",
      cost_usd: 0,
      created_at: ago(200),
      last_activity_at: values.lastActivity,
      closed_at: values.closedAt ?? null,
    })
    .returning(["id", "channel_id", "thread_ts"])
    .executeTakeFirstOrThrow();
  return row;
}

let approvalNo = 0;
async function approval(
  db: Db,
  taskId: string,
  values: { status?: string; created: Date; users: string[]; groups?: string[] } & {
    escalatedTo?: string[];
  },
) {
  await db
    .insertInto("approvals")
    .values({
      task_id: taskId,
      step_no: 1,
      tool_call_id: `call-${++approvalNo}`,
      model_call_id: `m-${approvalNo}`,
      agent_id: "billing",
      tool: `tool_${approvalNo}`,
      args: "{}",
      policy_id: "p",
      requester_id: "U0DANA",
      // Escalated, as the deadline sweep leaves it: its fallback people are now its approvers.
      approvers: JSON.stringify({
        users: values.escalatedTo ?? values.users,
        groups: values.escalatedTo ? [] : (values.groups ?? []),
      }),
      fallback: null,
      escalated_at: values.escalatedTo ? ago(1) : null,
      status: values.status ?? "pending",
      expires_at: ago(-100),
      created_at: values.created,
    })
    .execute();
}

/** Stale and fresh work side by side: only the stale must be reported. */
async function seed(db: Db) {
  const stale = {
    mine: await task(db, "Stale owned by Ann", {
      status: "active",
      owner: "human:U0ANN",
      lastActivity: ago(30),
    }),
    agents: await task(db, "Stale with Billing", {
      status: "waiting_human",
      owner: "agent:billing",
      lastActivity: ago(25),
    }),
    group: await task(db, "Stale with the leads", {
      status: "waiting_human",
      owner: "human:S0LEADS",
      lastActivity: ago(48),
    }),
  };
  await task(db, "Fresh owned by Ann", {
    status: "active",
    owner: "human:U0ANN",
    lastActivity: ago(23),
  });
  await task(db, "Old but done", { status: "done", owner: "agent:cs", lastActivity: ago(100) });
  const failed = await task(db, "Failed this morning", {
    status: "failed",
    owner: "human:U0ANN",
    lastActivity: ago(2),
    closedAt: ago(2),
  });
  await task(db, "Failed two days ago", {
    status: "failed",
    owner: "agent:cs",
    lastActivity: ago(48),
    closedAt: ago(48),
  });
  const on = stale.agents.id;
  await approval(db, on, { created: ago(5), users: ["U0LEE"], groups: ["S0LEADS"] });
  await approval(db, on, { created: ago(3), users: ["U0FRESH"] });
  await approval(db, on, { created: ago(10), users: ["U0DONE"], status: "approved" });
  await approval(db, on, { created: ago(6), users: ["U0KIM"], escalatedTo: ["U0BOSS"] });
  return { stale, failed };
}

const WORKSPACE = "https://acme.slack.com/";
const threadLink = (channel: string, ts: string) => messageLink(WORKSPACE, channel, ts);
const deps = (db: Db, chat?: ChatSurface): DigestDeps => ({
  db,
  log,
  agentsFile,
  chat,
  threadLink,
});
type DigestDm = Extract<ChatIntent, { kind: "digest_dm" }>;
const dmTo = (sent: ChatIntent[], user: string) =>
  sent.find((i): i is DigestDm => i.kind === "digest_dm" && i.user === user)?.digest;

describe("daily digest", () => {
  let database: TestDatabase;
  let db: Db;
  let seeded: Awaited<ReturnType<typeof seed>>;
  before(async () => {
    database = await createTestDatabase();
    db = database.db;
    seeded = await seed(db);
  });
  after(() => database.drop());

  test("two replicas firing at once send exactly one digest with exactly the stale items", async () => {
    const { chat, sent } = fakeChat();
    const fireAt = NOW;
    const earliest = await databaseNow(db);
    const results = await Promise.all([
      runDigest(deps(db, chat), fireAt, "replica-a"),
      runDigest(deps(db, chat), fireAt, "replica-b"),
    ]);
    const latest = await databaseNow(db);
    assert.deepEqual(results.map((r) => r.claimed).sort(), [false, true]);
    const winner = results.find((r) => r.claimed);
    assert.deepEqual(
      { ...winner, delivered: undefined },
      {
        claimed: true,
        staleTasks: 3,
        staleApprovals: 2,
        failedTasks: 1,
        channelMessages: 1,
        // Ann, Lee, and the fallback tool_4 was escalated to (no longer its first approver).
        directMessages: 3,
        refusedDirectMessages: 0,
        delivered: undefined,
      },
    );
    assert.equal(winner?.delivered, 4);

    const outbox = await db.selectFrom("slack_outbox").select(["method", "status"]).execute();
    assert.equal(outbox.length, 4);
    assert.ok(outbox.every((r) => r.status === "sent"));
    assert.equal(sent.length, 4);

    const channel = sent.find((i) => i.kind === "digest");
    assert.ok(channel?.kind === "digest" && channel.channel === "C0DIGEST");
    const { digest } = channel;
    assert.equal(digest.audience, "channel");
    const asOf = new Date(digest.asOf);
    assert.ok(earliest <= asOf && asOf <= latest, `as of ${digest.asOf}, by the database's clock`);
    assert.deepEqual(
      digest.staleTasks.map((t) => t.title),
      ["Stale with the leads", "Stale owned by Ann", "Stale with Billing"],
      "oldest first",
    );
    assert.deepEqual(
      digest.staleApprovals.map((a) => [a.toolName, a.approverIds]),
      [
        ["tool_4", ["U0BOSS"]],
        ["tool_1", ["U0LEE", "S0LEADS"]],
      ],
    );
    assert.deepEqual(
      digest.failedTasks.map((f) => f.title),
      ["Failed this morning"],
    );
    const listed = JSON.stringify(digest);
    for (const absent of ["Fresh owned by Ann", "Old but done", "Failed two days ago", "tool_2"])
      assert.ok(!listed.includes(absent), `${absent} must not be listed`);
    // The intent went through the outbox's JSON: dates arrive as the ISO strings they were.
    const ann = digest.staleTasks.find((t) => t.title === "Stale owned by Ann");
    assert.deepEqual(ann, {
      title: "Stale owned by Ann",
      owner: { kind: "human", id: "U0ANN" },
      lastActivityAt: ago(30).toISOString(),
      link: `${WORKSPACE}archives/C0DIGEST/p${seeded.stale.mine.thread_ts.replace(".", "")}`,
    });
    assert.equal(digest.failedTasks[0]?.failedAt, ago(2).toISOString());
    // And the adapter renders it as blocks, each item with a button to its thread.
    const rendered = JSON.stringify(digestMessage(digest).blocks);
    assert.match(rendered, /tool_1\*.*<@U0LEE>, <!subteam\^S0LEADS>/);
    assert.ok(rendered.includes(JSON.stringify(ann?.link)));

    assert.equal(dmTo(sent, "U0ANN")?.audience, "owner");
    const annDm = JSON.stringify(dmTo(sent, "U0ANN"));
    assert.match(annDm, /Stale owned by Ann/);
    assert.match(annDm, /Failed this morning/);
    assert.ok(!annDm.includes("Stale with Billing") && !annDm.includes("tool_1"));
    assert.match(JSON.stringify(dmTo(sent, "U0LEE")), /tool_1/);
    assert.match(JSON.stringify(dmTo(sent, "U0BOSS")), /tool_4/, "the fallback hears of it");
    assert.ok(
      !JSON.stringify(dmTo(sent, "U0KIM") ?? {}).includes("tool_4"),
      "an approver it was escalated away from can no longer decide it",
    );

    const runs = await db.selectFrom("scheduled_runs").selectAll().execute();
    assert.equal(runs.length, 1);
    assert.ok(runs[0]?.finished_at);
  });

  test("the next firing reports failures since the previous one only", async () => {
    // "Failed this morning" failed two hours before the previous firing, within the last day.
    const result = await runDigest(deps(db), new Date(NOW.getTime() + 24 * HOUR), "replica-a");
    assert.equal(result.failedTasks, 0);
    assert.equal(result.delivered, 0, "no chat: left in the outbox");
  });

  test("digest queries are index scans", async () => {
    await db.transaction().execute(async (tx) => {
      // Tiny tables: without this the planner rightly prefers a sequential scan.
      await sql`set local enable_seqscan = off`.execute(tx);
      const plan = async (query: { explain(): Promise<Record<string, unknown>[]> }) =>
        (await query.explain()).map((r) => String(r["QUERY PLAN"])).join("\n");
      assert.match(await plan(staleTasksQuery(tx, NOW, 10)), /tasks_open_activity_idx/);
      assert.match(await plan(staleApprovalsQuery(tx, NOW, 10)), /approvals_pending_created_idx/);
      assert.match(await plan(failedTasksQuery(tx, ago(24), 10)), /tasks_failed_closed_idx/);
    });
  });
});

describe("a digest channel and tasks elsewhere", () => {
  let database: TestDatabase;
  before(async () => {
    database = await createTestDatabase();
  });
  after(() => database.drop());

  test("the channel gets no words of a task from a direct message or another channel; its owner does", async () => {
    const { db } = database;
    const stale = { status: "waiting_human", owner: "human:U0ANN", lastActivity: ago(30) };
    await task(db, "my card 4111 1111 1111 1111 was charged twice", {
      ...stale,
      channel: "D0DANA",
    });
    await task(db, "complaint about my manager Bob", { ...stale, channel: "C0HR" });
    await task(db, "where is order 1042?", stale);
    const { chat, sent } = fakeChat();
    await runDigest(deps(db, chat), NOW, "replica-a");

    const channel = sent.find((i) => i.kind === "digest");
    assert.ok(channel?.kind === "digest");
    const titles = channel.digest.staleTasks.map((t) => t.title);
    assert.deepEqual(titles.toSorted(), [
      "a task in another conversation (its words stay there)",
      "a task in another conversation (its words stay there)",
      "where is order 1042?",
    ]);
    const shown = JSON.stringify(digestMessage(channel.digest).blocks);
    assert.ok(!shown.includes("4111") && !shown.includes("Bob"), shown);
    // Each keeps its owner, age and link: whoever can open the thread still can.
    assert.ok(channel.digest.staleTasks.every((t) => t.owner.id === "U0ANN" && t.link));

    const annDm = JSON.stringify(dmTo(sent, "U0ANN"));
    assert.match(annDm, /4111 1111 1111 1111/);
    assert.match(annDm, /manager Bob/);
  });
});

describe("work a user group owns", () => {
  let database: TestDatabase;
  before(async () => {
    database = await createTestDatabase();
  });
  after(() => database.drop());

  // Before, a group's work went only to the digest channel: with none set, to nobody.
  test("reaches each member's own digest, as a person's does", async () => {
    const { db } = database;
    const escalated = await task(db, "Lamp caught fire", {
      status: "waiting_human",
      owner: "human:S0LEADS",
      lastActivity: ago(48),
    });
    const refund = await task(db, "Refund order 1077", {
      status: "waiting_human",
      owner: "agent:billing",
      lastActivity: ago(1),
    });
    await approval(db, refund.id, { created: ago(10), users: [], groups: ["S0LEADS"] });
    const { chat, sent } = fakeChat();
    chat.groupMembers = async (group) => (group === "S0LEADS" ? ["U0LEE", "U0KIM"] : []);
    const noChannel = agentsFileSchema.parse({
      ...agentsFile,
      digest: { stale_after: "24h", approval_stale_after: "4h" },
    });
    await runDigest({ ...deps(db, chat), agentsFile: noChannel }, NOW, "replica-a");

    for (const member of ["U0LEE", "U0KIM"]) {
      const dm = dmTo(sent, member);
      assert.deepEqual(
        dm?.staleTasks.map((t) => t.title),
        ["Lamp caught fire"],
      );
      assert.deepEqual(
        dm?.staleApprovals.map((a) => a.taskTitle),
        ["Refund order 1077"],
      );
    }
    assert.ok(escalated);
  });
});

describe("digest with nothing stale", () => {
  test("sends a short all clear to the channel and nothing to anyone else", async () => {
    const database = await createTestDatabase();
    try {
      const { chat, sent } = fakeChat();
      const result = await runDigest(deps(database.db, chat), NOW, "replica-a");
      assert.equal(result.directMessages, 0);
      assert.equal(sent.length, 1);
      const [only] = sent;
      assert.ok(only?.kind === "digest" && only.channel === "C0DIGEST");
      assert.ok(isDigestEmpty(only.digest));
      assert.match(JSON.stringify(digestMessage(only.digest).blocks), /All clear/);
    } finally {
      await database.drop();
    }
  });
});

describe("two node-cron schedulers", () => {
  test("one claimed run and one digest per firing", async () => {
    const database = await createTestDatabase();
    const db = database.db;
    try {
      await task(db, "Stale", { status: "active", owner: "human:U0ANN", lastActivity: ago(30) });
      const { chat, sent } = fakeChat();
      const attempts: { instance: string; fireAt: Date }[] = [];
      const inflight: Promise<unknown>[] = [];
      const start = (instance: string) =>
        startScheduler({
          schedule: "* * * * * *",
          timezone: "Europe/Paris",
          log,
          name: instance,
          run: async (fireAt) => {
            attempts.push({ instance, fireAt });
            const running = runDigest(deps(db, chat), fireAt, instance);
            inflight.push(running);
            await running;
          },
        });
      const schedulers = [start("replica-a"), start("replica-b")];
      await sleep(2_500);
      await Promise.all(schedulers.map((s) => s.stop()));
      await Promise.all(inflight);

      const runs = await db.selectFrom("scheduled_runs").select(["fire_at"]).execute();
      const fired = new Set(attempts.map((a) => a.fireAt.getTime()));
      assert.ok(runs.length >= 1);
      assert.equal(runs.length, fired.size, "every firing claimed exactly once");
      assert.ok(attempts.every((a) => a.fireAt.getMilliseconds() === 0));
      const both = [...fired].filter(
        (t) =>
          new Set(attempts.filter((a) => a.fireAt.getTime() === t).map((a) => a.instance)).size ===
          2,
      );
      assert.ok(both.length >= 1, "both schedulers fired the same second at least once");
      const digests = sent.filter((i) => i.kind === "digest").length;
      assert.equal(digests, runs.length, "one channel digest per firing");
      assert.equal(sent.filter((i) => i.kind === "digest_dm").length, runs.length);
    } finally {
      await database.drop();
    }
  });

  test("a bad expression or time zone fails at start with what to write", () => {
    const run = async () => {};
    assert.throws(
      () => startScheduler({ schedule: "at nine", timezone: "UTC", run, log }),
      ConfigError,
    );
    assert.throws(
      () => startScheduler({ schedule: "0 9 * * 1-5", timezone: "Mars/Olympus", run, log }),
      /IANA/,
    );
  });
});
