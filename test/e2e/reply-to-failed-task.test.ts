import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { sql } from "kysely";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import type { Db } from "../../src/db/database.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import type { Script } from "../support/model-server.ts";
import { auditEvents, postsInThread, taskWithStatus } from "../support/observe.ts";
import { pingPongAgents, pingPongScript } from "../support/ping-pong.ts";

// A task that fails left the reply its run had read unread; the end of the run opened the task
// again for it, the next run failed the same way, and so on: the thread filled with failure
// notices, and with a model that refuses the request, each one was a billed model call.

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const failureNotices = (harness: Harness, ts: string) =>
  postsInThread(harness.slack, ts).filter((p) => /task failed/i.test(String(p.args.text)));

/** Settled: failed, no run holding it, no reply unread and no job left to run it. */
async function settledFailed(db: Db, ts: string) {
  const task = await taskWithStatus(db, ts, "failed");
  if (!task || task.lease_owner !== null) return undefined;
  const { rows } = await sql<{ unread: number; jobs: number }>`
    select
      (select count(*)::int from task_inputs
        where task_id = ${task.id} and consumed_at_step is null) as unread,
      (select count(*)::int from pgboss.job
        where name = 'task.run' and data->>'taskId' = ${task.id}
          and state in ('created', 'retry', 'active')) as jobs`.execute(db);
  return rows[0]?.unread === 0 && rows[0]?.jobs === 0 ? task : undefined;
}

test("a reply to a task that failed at the hop limit is told once that it failed", async () => {
  const harness = await startHarness({ script: pingPongScript, agentsFile: pingPongAgents(2) });
  h = harness;
  const { ts } = await harness.mention("where is order 1042?");
  await harness.until("the first failure notice", async () =>
    failureNotices(harness, ts).length === 1 ? true : undefined,
  );
  await harness.reply(ts, "hello? any news?");
  const task = await harness.until("the task to settle again", async () => {
    const settled = await settledFailed(harness.db.db, ts);
    return settled && failureNotices(harness, ts).length >= 2 ? settled : undefined;
  });
  assert.equal((await auditEvents(harness.db.db, task.id, "task_failed")).length, 2);
  assert.equal(failureNotices(harness, ts).length, 2);
});

test("a reply the model refuses fails the task with one model call, not a loop of them", async () => {
  const oneAgent = parseAgentsFile(
    `
defaults:
  entry_agent: cs
agents:
  - id: cs
    name: Customer Service
    icon: ":speech_balloon:"
    tools: [lookup_order]
    instructions: Answer.
`,
    "one-agent.yml",
    demoTools,
  );
  let calls = 0;
  const script: Script = () =>
    calls++ === 0
      ? { content: "Order 1042 ships today." }
      : { status: 400, error: "This model's maximum context length is 8192 tokens." };
  const harness = await startHarness({ script, agentsFile: oneAgent });
  h = harness;
  const { ts } = await harness.mention("where is order 1042?");
  await harness.until("the answer", () => taskWithStatus(harness.db.db, ts, "done"));
  await harness.reply(ts, "and order 1043?");
  const task = await harness.until("the task to settle, failed", () =>
    settledFailed(harness.db.db, ts),
  );
  assert.equal(calls, 2, "the model was asked once for the reply");
  assert.equal((await auditEvents(harness.db.db, task.id, "task_failed")).length, 1);
  assert.equal(failureNotices(harness, ts).length, 1);
});
