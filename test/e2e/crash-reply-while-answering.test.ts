import assert from "node:assert/strict";
import { after, test } from "node:test";
import { sql } from "kysely";
import { type BatonProcess, spawnBaton } from "../support/baton-process.ts";
import { createTestDatabase } from "../support/db.ts";
import { CHANNEL, freePort, REQUESTER, SIGNING_SECRET } from "../support/harness.ts";
import { startModelServer } from "../support/model-server.ts";
import { postsInThread, taskInThread } from "../support/observe.ts";
import { startSlackEmulator } from "../support/slack-emulator.ts";
import { appMentionEvent, deliverEvent, messageEvent } from "../support/slack-signing.ts";

// A reply that comes while the agent writes its final answer finds the task active: it is kept and
// its job queued, and that job, finding the run's lease held, ends at once. The run's release would
// open the task again for it; here the process is killed (SIGKILL) after the answer committed and
// before that release. The task is answered, its lease runs out, and its reply waits unread.
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

test("a reply kept while the answer was written, then a crash before the release: it is answered after the restart", async () => {
  const db = await createTestDatabase();
  const slack = await startSlackEmulator({ users: [{ id: REQUESTER, name: "dana" }] });
  let answerFirst: () => void = () => {};
  const firstHeld = new Promise<void>((resolve) => {
    answerFirst = resolve;
  });
  const model = await startModelServer(async (_request, ctx) => {
    if (ctx.callIndex > 0) return { content: "Order 1078 ships tomorrow." };
    await firstHeld;
    return { content: "Order 1042 left the warehouse yesterday." };
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
  const first = await start(false);

  const text = "<@U0BATONBOT> where is order 1042?";
  const { ts } = slack.addMessage({ channel: CHANNEL, user: REQUESTER, text });
  const mention = appMentionEvent({ user: REQUESTER, channel: CHANNEL, text, ts });
  assert.equal((await deliverEvent(endpoint, SIGNING_SECRET, mention)).status, 200);
  await until("the model to be asked", async () => model.requests.length === 1);
  const task = await until("the task", () => taskInThread(db.db, ts));

  // The requester replies while the agent is still answering: the task is active.
  const reply = slack.addMessage({
    channel: CHANNEL,
    user: REQUESTER,
    text: "and order 1078?",
    threadTs: ts,
  });
  const event = messageEvent({
    user: REQUESTER,
    channel: CHANNEL,
    text: "and order 1078?",
    ts: reply.ts,
    threadTs: ts,
  });
  assert.equal((await deliverEvent(endpoint, SIGNING_SECRET, event)).status, 200);
  // Every job of the task (the start's, due when the lease would run out, and the reply's) found
  // the lease held by the run and ended.
  await until("the task's jobs to end while the run holds it", async () => {
    const { rows } = await sql<{ open: number; all: number }>`
      select count(*) filter (where state <> 'completed')::int as open, count(*)::int as all
      from pgboss.job where name = 'task.run' and data->>'taskId' = ${task.id}`.execute(db.db);
    return rows[0]?.all === 2 && rows[0].open === 0;
  });

  // The answer commits; Slack takes its post and the process dies before hearing back.
  const answerPosted = slack.holdAnswer("chat.postMessage", (call) =>
    JSON.stringify(call.args).includes("left the warehouse"),
  );
  answerFirst();
  await answerPosted.arrived;
  await first.kill();
  await first.exited;
  answerPosted.release();
  const crashed = await taskInThread(db.db, ts);
  assert.equal(crashed?.status, "done");
  assert.ok(crashed?.lease_owner, "the dead run never gave the task up");

  await until("the dead run's lease to run out", async () => {
    const { rows } = await sql<{ expired: boolean }>`
      select lease_until < now() as expired from tasks where id = ${task.id}`.execute(db.db);
    return rows[0]?.expired === true;
  });
  await start(true);
  await until("the reply to be answered", async () =>
    postsInThread(slack, ts).some((c) => JSON.stringify(c.args).includes("1078 ships")),
  );
  assert.equal(model.requests.length, 2, "the answer was not asked for again");
  const posts = postsInThread(slack, ts).filter((c) =>
    JSON.stringify(c.args).includes("left the warehouse"),
  );
  assert.equal(posts.length, 1, "the first answer is in the thread once");
});
