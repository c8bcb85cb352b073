import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { ToolDefinition } from "../../src/core/tools/tool.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { postsInThread, taskWithStatus } from "../support/observe.ts";

// The order system is down: every lookup throws, so every attempt of the task's job fails.
const tools: ToolDefinition[] = demoTools.map((t) =>
  t.name === "lookup_order"
    ? {
        ...t,
        run: async () => {
          throw new Error("the order system timed out after 30 s");
        },
      }
    : t,
);

let h: Harness;
before(async () => {
  // Two attempts (one retry) keep the test short; the default five only take longer.
  h = await startHarness({
    tools,
    jobRetries: 1,
    script: () => ({ toolCalls: [{ name: "lookup_order", arguments: { order_id: "1042" } }] }),
  });
});
after(async () => {
  await h.close();
});

test("a dead-lettered task tells its thread, once, that it failed and why", async () => {
  const { ts } = await h.mention("where is order 1042?");
  const task = await h.until(
    "the task to be dead-lettered",
    () => taskWithStatus(h.db.db, ts, "failed"),
    30_000,
  );
  const notices = await h.until("the notice", async () => {
    const posts = postsInThread(h.slack, ts);
    return posts.length > 0 ? posts : undefined;
  });
  await new Promise((r) => setTimeout(r, 3_000));
  assert.equal(postsInThread(h.slack, ts).length, 1, "told exactly once");
  const text = String(notices[0]?.args.text);
  assert.match(text, /failed/i);
  assert.match(
    text,
    /order system timed out/,
    `the notice says why: ${text}; reason: ${task.failure_reason}`,
  );
});
