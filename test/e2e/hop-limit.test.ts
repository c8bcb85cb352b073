import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type Harness, startHarness } from "../support/harness.ts";
import { auditEvents, postsInThread, taskWithStatus } from "../support/observe.ts";
import { pingPongAgents, pingPongScript } from "../support/ping-pong.ts";

const HOP_LIMIT = 4;
const agentsFile = pingPongAgents(HOP_LIMIT);
const script = pingPongScript;

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
});
