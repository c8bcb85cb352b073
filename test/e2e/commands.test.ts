import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { whereIsMyOrderScript } from "../support/scripts.ts";
import { finishedTask } from "../support/scripts-humans.ts";
import { runBaton } from "../support/slash-command.ts";

let h: Harness;
before(async () => {
  h = await startHarness({ script: scriptByAgent(whereIsMyOrderScript()) });
  const { ts } = await h.mention("where is order 1042?");
  await h.until("flow 1 to finish", () => finishedTask(h.db.db, ts));
});
after(async () => {
  await h.close();
});

const baton = (text: string) => runBaton(h, text);

test("/baton status <order> tells where the task is and its ownership history", async () => {
  const answer = await baton("status 1042");
  assert.ok(answer.ephemeral);
  assert.match(answer.text, /done, owned by Customer Service/);
  assert.match(answer.text, /transfer: Customer Service → Fulfillment/);
  assert.match(answer.text, /hand back: Inventory → Fulfillment/);
});

test("/baton audit <order> answers with the story in order, within Slack's limits", async () => {
  const answer = await baton("audit 1042");
  assert.ok(answer.ephemeral);
  for (const piece of ["adjust_stock", "Inventory", "ship_order", "handoff"])
    assert.ok(answer.blocks.includes(piece), piece);
  assert.ok(JSON.parse(answer.blocks).length <= 50);
});

test("/baton who <order> <tool> answers who processed it", async () => {
  const answer = await baton("who 1042 adjust_stock");
  assert.match(answer.text, /inventory|Inventory/);
});

test("/baton with an unknown reference or no verb says what to do", async () => {
  assert.match(
    (await baton("audit 99999")).text,
    /^No task you can read here matches that reference/,
  );
  assert.match((await baton("")).text, /\/baton status/);
});
