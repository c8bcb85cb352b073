import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { afterEach, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { finishedTask } from "../support/scripts-humans.ts";
import { runBaton } from "../support/slash-command.ts";

// An order can have several tasks (a question, then a return): `/baton audit <order>` and
// `npm run audit -- <order>` tell the same tasks, and say which task each step is of.

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const lookUp = { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1077" } }] };

async function twoTasksOfOneOrder() {
  h = await startHarness({
    script: scriptByAgent({
      "customer-service": [
        lookUp,
        { content: "Order 1077 ships today." },
        lookUp,
        { content: "Order 1077 shipped yesterday." },
      ],
    }),
  });
  const harness = h;
  const tasks = [];
  for (const text of ["where is order 1077?", "has order 1077 shipped yet?"]) {
    const { ts } = await harness.mention(text);
    tasks.push(await harness.until("the answer", () => finishedTask(harness.db.db, ts)));
  }
  const [older, newer] = tasks;
  assert.ok(older && newer);
  return { harness, older, newer };
}

test("/baton audit of an order with two tasks tells the newest and names the other", async () => {
  const { harness, older, newer } = await twoTasksOfOneOrder();
  const answer = await runBaton(harness, "audit 1077", { user: "U0REQUESTER" });
  assert.ok(answer.blocks.includes(newer.id), "the newest task's story");
  assert.ok(
    answer.blocks.includes(older.id),
    "the older task of the order is named, not silently left out",
  );
});

test("npm run audit of an order with two tasks says which task each step is of", async () => {
  const { harness, older, newer } = await twoTasksOfOneOrder();
  const run = promisify(execFile);
  const { stdout } = await run(process.execPath, ["scripts/audit.ts", "1077"], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: harness.db.url },
  });
  const lines = stdout.trim().split("\n");
  const asked = (text: string) => lines.find((l) => l.includes(`Message: "${text}"`)) ?? "";
  assert.ok(asked("where is order 1077?").includes(older.id), asked("where is order 1077?"));
  assert.ok(asked("has order 1077 shipped yet?").includes(newer.id));
});
