import assert from "node:assert/strict";
import { after, test } from "node:test";
import { type Harness, startHarness } from "../support/harness.ts";
import type { Script } from "../support/model-server.ts";
import { finishedTask } from "../support/scripts-humans.ts";

let h: Harness | undefined;
after(async () => {
  await h?.close();
});

test("a reply sent while the agent writes its final answer is answered too", async () => {
  let thread = "";
  const asked: string[] = [];
  const script: Script = async (request) => {
    asked.push(JSON.stringify(request.messages));
    if (asked.length === 1) {
      // The requester adds something while the agent's first (and final) answer is on its way.
      while (!thread) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal((await harness.reply(thread, "also: it is order 1078, not 1042")).status, 200);
      return { content: "Order 1042 left the warehouse yesterday." };
    }
    return { content: "Order 1078 ships tomorrow." };
  };
  const harness: Harness = await startHarness({ script });
  h = harness;
  thread = (await harness.mention("where is order 1042?")).ts;
  await harness.until("the reply to be answered", async () =>
    asked.length === 2 ? true : undefined,
  );
  const task = await harness.until("the task to finish again", () =>
    finishedTask(harness.db.db, thread),
  );
  assert.match(asked[1] ?? "", /order 1078, not 1042/, "the second answer read the reply");
  const unread = await harness.db.db
    .selectFrom("task_inputs")
    .select("text")
    .where("task_id", "=", task.id)
    .where("consumed_at_step", "is", null)
    .execute();
  assert.deepEqual(unread, []);
  await harness.until("both answers in the thread", async () => {
    const texts = harness.slack.callsTo("chat.postMessage").map((c) => String(c.args.text ?? ""));
    return texts.some((t) => t.includes("1042 left")) && texts.some((t) => t.includes("1078 ships"))
      ? true
      : undefined;
  });
});
