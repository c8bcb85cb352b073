import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createLogger } from "../../src/log.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { taskWithStatus } from "../support/observe.ts";

// What the operator reads: every line Baton logs, as JSON.
const lines: Record<string, unknown>[] = [];
const log = createLogger({
  level: "info",
  destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
});
const API_KEY = "sk-operator-key-0123456789abcdef";

let h: Harness;
before(async () => {
  // The agents file names a model the server does not have: every task stops at its first turn.
  h = await startHarness({
    log,
    apiKey: API_KEY,
    script: (body) => ({
      status: 404,
      error: `The model \`${body.model}\` does not exist or you do not have access to it.`,
    }),
  });
});
after(async () => {
  await h.close();
});

test("a task that stops because the model cannot be used is in the operator's log, with its task and reason", async () => {
  const { ts } = await h.mention("where is order 1042?");
  const task = await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"));
  const line = await h.until("the failure in the log", async () =>
    lines.find((l) => l.taskId === task.id && Number(l.level) >= 40),
  );
  assert.match(String(line.msg), /task failed/);
  assert.match(String(line.reason), /does not exist/, JSON.stringify(line));
  assert.doesNotMatch(JSON.stringify(lines), new RegExp(API_KEY));
});
