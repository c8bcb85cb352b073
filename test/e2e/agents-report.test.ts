import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { taskWithStatus } from "../support/observe.ts";
import { whereIsMyOrderScript } from "../support/scripts.ts";
import { runBaton } from "../support/slash-command.ts";

// `/baton agents`: each agent's record from the ledger, through real Bolt, after flow 1 ran.

let h: Harness;
before(async () => {
  h = await startHarness({ script: scriptByAgent(whereIsMyOrderScript()) });
});
after(async () => {
  await h.close();
});

test("/baton agents shows what each agent did, from the ledger", async () => {
  const { ts } = await h.mention("where is my order 1042?");
  await h.until("flow 1 to finish", () => taskWithStatus(h.db.db, ts, "done"));

  const { text, ephemeral } = await runBaton(h, "agents");
  assert.ok(ephemeral, "only the asker sees it");
  const line = (name: string) => {
    const lines = text.split("\n");
    const at = lines.findIndex((l) => l.startsWith(`• *${name}*`));
    assert.notEqual(at, -1, `${name} is listed:\n${text}`);
    return `${lines[at]}\n${lines[at + 1]}`;
  };
  assert.match(text, /^\*Your agents, the last 30 days\*/);
  assert.match(
    line("Customer Service"),
    /autonomous · \d+ model calls · under 0\.01 USD\n {3}no writes/,
  );
  assert.match(
    line("Fulfillment"),
    /autonomous · \d+ model calls · under 0\.01 USD\n {3}writes: 1 ran on its own$/,
  );
  assert.match(
    line("Inventory"),
    /autonomous · \d+ model calls · under 0\.01 USD\n {3}writes: 1 ran on its own$/,
  );
  assert.match(line("Billing"), /autonomous · 0 model calls\n {3}no writes/);

  assert.match((await runBaton(h, "agents 0")).text, /^Usage: `\/baton agents \[days\]`/);
  assert.match((await runBaton(h, "help")).text, /\/baton agents \[days\]/);
});

test("with supervisors named, only they see the agents' records", async () => {
  const file = h.agentsFile;
  const supervised = await startHarness({
    script: scriptByAgent({}),
    agentsFile: {
      ...file,
      policies: { ...file.policies, supervisors: { users: ["U0BOSS"], groups: [] } },
    },
  });
  try {
    assert.match(
      (await runBaton(supervised, "agents", { user: "U0OPS" })).text,
      /^Only the agents' supervisors \(policies\.supervisors in the agents file\) see their records\.$/,
    );
    assert.match(
      (await runBaton(supervised, "agents", { user: "U0BOSS" })).text,
      /^\*Your agents, the last 30 days\*/,
    );
  } finally {
    await supervised.close();
  }
});
