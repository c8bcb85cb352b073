import assert from "node:assert/strict";
import { after, test } from "node:test";
import { sql } from "kysely";
import { PgBoss } from "pg-boss";
import { LOST_TRY } from "../../src/db/lease.repository.ts";
import { TASK_QUEUE } from "../../src/jobs/queue.ts";
import { auditStory } from "../../src/runtime/audit-story.ts";
import { type BatonProcess, spawnBaton } from "../support/baton-process.ts";
import { createTestDatabase } from "../support/db.ts";
import { CHANNEL, freePort, REQUESTER, SIGNING_SECRET } from "../support/harness.ts";
import { startModelServer } from "../support/model-server.ts";
import { postsInThread, taskWithStatus } from "../support/observe.ts";
import { startSlackEmulator } from "../support/slack-emulator.ts";
import { appMentionEvent, deliverEvent, messageEvent } from "../support/slack-signing.ts";

// A job's worker killed mid-run (SIGKILL) leaves its job active and the task's lease held. The
// task is taken over once the lease runs out, long before pg-boss expires the job; that claim
// records the lost try. When pg-boss expires the job and retries it, nothing is recorded again.
const LEASE_MS = 1_500;
const children: BatonProcess[] = [];
const closing: (() => Promise<void>)[] = [];
after(async () => {
  for (const child of children) await child.stop();
  for (const close of closing) await close();
});

async function until<T>(what: string, check: () => Promise<T | undefined | false>, ms = 20_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("a job whose worker died records one failed try, and none again when pg-boss expires and retries the job", async () => {
  const db = await createTestDatabase();
  const slack = await startSlackEmulator({ users: [{ id: REQUESTER, name: "dana" }] });
  let first: BatonProcess | undefined;
  const model = await startModelServer(async (_request, ctx) => {
    if (ctx.callIndex === 0) return { content: "Order 1042 left the warehouse yesterday." };
    if (ctx.callIndex === 1) {
      // The reply's job is at the model: its worker dies.
      await first?.kill();
      return { status: 500, error: "nobody is listening: the worker was killed" };
    }
    return { content: "Order 1078 ships tomorrow." };
  });
  closing.push(async () => {
    await Promise.all([slack.close(), model.close()]);
    await db.drop();
  });
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}/slack/events`;
  const start = async (maintenance: boolean) => {
    const child = await spawnBaton({
      databaseUrl: db.url,
      slackApiUrl: slack.url,
      openaiBaseUrl: model.baseURL,
      port,
      signingSecret: SIGNING_SECRET,
      leaseMs: LEASE_MS,
      maintenance,
      ...(process.env.TEST_LOG_LEVEL && { logLevel: process.env.TEST_LOG_LEVEL }),
    });
    children.push(child);
    return child;
  };
  first = await start(false);
  const dead = first;

  const text = "<@U0BATONBOT> where is order 1042?";
  const { ts } = slack.addMessage({ channel: CHANNEL, user: REQUESTER, text });
  const mention = appMentionEvent({ user: REQUESTER, channel: CHANNEL, text, ts });
  assert.equal((await deliverEvent(endpoint, SIGNING_SECRET, mention)).status, 200);
  const task = await until("the answer", () => taskWithStatus(db.db, ts, "done"));

  // A reply opens the task again; its job's run is at the model when the process is killed.
  const reply = slack.addMessage({
    channel: CHANNEL,
    user: REQUESTER,
    text: "and 1078?",
    threadTs: ts,
  });
  const event = messageEvent({
    user: REQUESTER,
    channel: CHANNEL,
    text: "and 1078?",
    ts: reply.ts,
    threadTs: ts,
  });
  assert.equal((await deliverEvent(endpoint, SIGNING_SECRET, event)).status, 200);
  await dead.exited;
  const { rows: active } = await sql<{ id: string }>`
    select id from pgboss.job
    where name = ${TASK_QUEUE} and data->>'taskId' = ${task.id} and state = 'active'`.execute(
    db.db,
  );
  assert.equal(active.length, 1, "the dead worker's job is left active");
  const left = await db.db
    .selectFrom("tasks")
    .select(["status", "lease_owner"])
    .where("id", "=", task.id)
    .executeTakeFirstOrThrow();
  assert.equal(left.status, "active");
  assert.ok(left.lease_owner?.startsWith(`${dead.workerId}/`), "the dead run still holds the task");

  // Another process takes the task over once the lease runs out, and answers the reply.
  await start(true);
  await until("the reply to be answered", async () =>
    postsInThread(slack, ts).some((c) => JSON.stringify(c.args).includes("1078 ships")),
  );
  await until("the task to be answered again", () => taskWithStatus(db.db, ts, "done"));

  // pg-boss expires the dead worker's job (15 minutes on, here at once) and retries it.
  const [job] = active;
  assert.ok(job);
  await sql`update pgboss.job set started_on = now() - interval '1 hour' where id = ${job.id}::uuid`.execute(
    db.db,
  );
  const boss = new PgBoss({ connectionString: db.url, supervise: false, migrate: false });
  await boss.start();
  try {
    await boss.supervise(TASK_QUEUE);
  } finally {
    await boss.stop({ graceful: false });
  }
  await until("the expired job's retry to run and end", async () => {
    const { rows } = await sql<{ state: string; retry_count: number }>`
      select state, retry_count from pgboss.job where id = ${job.id}::uuid`.execute(db.db);
    return rows[0]?.state === "completed" && rows[0].retry_count === 1;
  });

  const tries = await db.db
    .selectFrom("audit_events")
    .select(["actor_kind", "data"])
    .where("task_id", "=", task.id)
    .where("kind", "=", "attempt_failed")
    .execute();
  assert.equal(tries.length, 1, JSON.stringify(tries));
  const [lost] = tries;
  assert.equal(lost?.actor_kind, "system");
  assert.equal(lost?.data.error, LOST_TRY);
  assert.equal(lost?.data.retried, true);
  assert.match(String(lost?.data.run), new RegExp(`^${dead.workerId}/`));

  const { entries } = await auditStory({ db: db.db }, task.id);
  assert.deepEqual(
    entries.filter((e) => e.kind === "attempt_failed").map((e) => `${e.actor} ${e.text}`),
    [`system Try failed, retried: ${LOST_TRY}`],
  );
  assert.equal(model.requests.length, 3, "the reply was asked of the model once more, no more");
});
