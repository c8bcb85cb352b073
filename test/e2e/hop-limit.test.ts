import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import type { Script } from "../support/model-server.ts";
import { auditEvents, postsInThread, taskWithStatus } from "../support/observe.ts";

const HOP_LIMIT = 4;
const agentsFile = parseAgentsFile(
  `
defaults:
  entry_agent: ping
  hop_limit: ${HOP_LIMIT}
agents:
  - id: ping
    name: Ping
    icon: ":table_tennis_paddle_and_ball:"
    tools: [lookup_order]
    handoffs: [pong]
    instructions: Always hand the work to Pong.
  - id: pong
    name: Pong
    icon: ":ping_pong:"
    tools: [lookup_order]
    handoffs: [ping]
    instructions: Always hand the work to Ping.
`,
  "hop-limit.yml",
  new Set(demoTools.map((t) => t.name)),
);

// Each agent passes the work straight to the other, forever.
const script: Script = (_request, ctx) => ({
  toolCalls: [
    {
      name: ctx.agentId === "ping" ? "transfer_to_pong" : "transfer_to_ping",
      arguments: {
        summary: `Not mine; over to you (pass ${ctx.callIndex + 1}).`,
        needed: "Deal with it.",
        facts: { order_id: "1042" },
      },
    },
  ],
});

let h: Harness;
before(async () => {
  h = await startHarness({ script, agentsFile });
});
after(async () => {
  await h.close();
});

test("agents that keep handing work to each other stop at the hop limit, and the thread is told", async () => {
  const { ts } = await h.mention("where is order 1042?");
  const task = await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"));

  const handoffs = await h.db.db
    .selectFrom("handoffs")
    .select(["kind", "from_id", "to_id"])
    .where("task_id", "=", task.id)
    .orderBy("id")
    .execute();
  const transfers = handoffs.filter((x) => x.kind === "transfer");
  assert.equal(transfers.length, HOP_LIMIT);
  assert.deepEqual(
    transfers.map((x) => `${x.from_id}->${x.to_id}`),
    ["ping->pong", "pong->ping", "ping->pong", "pong->ping"],
  );
  assert.equal(task.hop_count, HOP_LIMIT);
  assert.match(task.failure_reason ?? "", /limit is 4/);
  assert.equal(h.model.requests.length, HOP_LIMIT, "no model call past the limit");
  assert.equal((await auditEvents(h.db.db, task.id, "task_failed")).length, 1);

  // Four handoff cards, then one notice that names the limit.
  const notice = await h.until("the failure notice", async () => {
    const posts = postsInThread(h.slack, ts);
    return posts.length === HOP_LIMIT + 1 ? posts.at(-1) : undefined;
  });
  assert.match(String(notice.args.text), /task failed/i);
  assert.match(String(notice.args.text), /the limit is 4/);
});
