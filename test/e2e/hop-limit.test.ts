import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type Harness, startHarness } from "../support/harness.ts";
import type { Script } from "../support/model-server.ts";
import { auditEvents, postsInThread, taskWithStatus, textOf } from "../support/observe.ts";
import { pingPongAgents, pingPongScript } from "../support/ping-pong.ts";
import { runBaton } from "../support/slash-command.ts";

const HOP_LIMIT = 4;
const agentsFile = pingPongAgents(HOP_LIMIT);
/** Ping-pong, until the requester says what to do. */
const script: Script = (request, ctx) =>
  request.messages.some((m) => textOf(m).includes("just tell me"))
    ? { content: "Order 1042 left the warehouse today." }
    : pingPongScript(request, ctx);

let h: Harness;
before(async () => {
  h = await startHarness({ script, agentsFile });
});
after(async () => {
  await h.close();
});

test("agents that keep handing work to each other stop past the hop limit, and the thread is told", async () => {
  const { ts } = await h.mention("where is order 1042?");
  const task = await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"));

  const handoffs = await h.db.db
    .selectFrom("handoffs")
    .select(["kind", "from_id", "to_id"])
    .where("task_id", "=", task.id)
    .orderBy("id")
    .execute();
  const transfers = handoffs.filter((x) => x.kind === "transfer");
  // The limit's handoffs, and the one past it that stops the task.
  assert.equal(transfers.length, HOP_LIMIT + 1);
  assert.deepEqual(
    transfers.map((x) => `${x.from_id}->${x.to_id}`),
    ["ping->pong", "pong->ping", "ping->pong", "pong->ping", "ping->pong"],
  );
  assert.equal(task.hop_count, HOP_LIMIT + 1);
  assert.match(task.failure_reason ?? "", /5 times .*limit is 4/);
  assert.equal(h.model.requests.length, HOP_LIMIT + 1, "no model call past the limit");
  assert.equal((await auditEvents(h.db.db, task.id, "task_failed")).length, 1);

  // Five handoff cards, then one notice that names the limit.
  const notice = await h.until("the failure notice", async () => {
    const posts = postsInThread(h.slack, ts);
    return posts.length === HOP_LIMIT + 2 ? posts.at(-1) : undefined;
  });
  assert.match(String(notice.args.text), /task failed/i);
  assert.match(String(notice.args.text), /the limit is 4/);
  // What to do next, and the history by the thread's link: never the task's id.
  const words = JSON.stringify(notice.args.blocks);
  assert.match(words, /Reply in this thread to have Baton try again/);
  assert.ok(words.includes(`/baton audit https://`), words);
  assert.ok(!words.includes(task.id), "the task's id is not shown");
});

test("a reply to a task stopped at the hop limit gives the agents a fresh count", async () => {
  const { ts } = await h.mention("where is order 1043?");
  const failed = await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"));
  const before = h.model.requests.length;

  await h.reply(ts, "just tell me where it is");
  const done = await h.until("the answer", () => taskWithStatus(h.db.db, ts, "done"));
  assert.equal(done.id, failed.id, "the reply reopened the same task");
  assert.equal(done.hop_count, 0, "the count starts again from the requester's reply");
  assert.equal(h.model.requests.length, before + 1, "the agent read the reply and answered");
  const answer = await h.until("the answer in Slack", async () =>
    postsInThread(h.slack, ts).find((p) => String(p.args.text).includes("left the warehouse")),
  );
  assert.equal(answer.args.username, "Pong");
  // The task's story still counts every handoff.
  const status = await runBaton(h, `status ${done.id}`, { user: "U0REQUESTER" });
  assert.match(status.text, /· 5 handoffs ·/);
});
