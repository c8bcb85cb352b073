import assert from "node:assert/strict";
import { test } from "node:test";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import { agentsFileWith, type Harness, harnessPerTest, SUPPORT_LANE } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForEscalationCard } from "../support/observe.ts";
import { escalationScript, taskOfThread } from "../support/scripts-humans.ts";

// Who owns an escalation is what the agents file says of its lane: every person and group it
// names, or the members of its channel. The card sits in the task's thread, which people outside
// the lane can see and click too.

const startHarness = harnessPerTest();

async function escalated(h: Harness) {
  const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(h);
  return { ts, escalation };
}

async function statusOf(h: Harness, id: string) {
  const row = await h.db.db
    .selectFrom("escalations")
    .select(["status", "decided_by"])
    .where("id", "=", id)
    .executeTakeFirstOrThrow();
  return row;
}

test("a lane owned by a channel: only its members take the work over", async () => {
  const h = await startHarness({ script: scriptByAgent(escalationScript()) });
  const { ts, escalation } = await escalated(h);
  // agents.yml: support is #support's (C0SUPPORT), whose members the emulator lists.
  assert.deepEqual(escalation.owner, { kind: "channel", id: "C0SUPPORT" });

  await h.clickCard("U0BYSTANDER", ESCALATION_TAKE_OVER, escalation, ts);
  const told = await h.until("the bystander to be told", async () =>
    h.slack.ephemerals.find((e) => e.user === "U0BYSTANDER"),
  );
  assert.match(String(told.text), /^This escalation is for the members of <#C0SUPPORT>/);
  assert.equal((await statusOf(h, escalation.id)).status, "open");

  await h.clickCard("U0SUPPORTLEAD", ESCALATION_TAKE_OVER, escalation, ts);
  const task = await h.until("the lead to hold the task", async () => {
    const row = await taskOfThread(h.db.db, ts);
    return row?.owner_id === "U0SUPPORTLEAD" ? row : undefined;
  });
  assert.equal(task.status, "waiting_human");
});

test("a lane that names several people and a group: any of them may act; its channel hears of it", async () => {
  const agentsFile = agentsFileWith([
    SUPPORT_LANE,
    "    support:\n      users: [U0ALICE, U0BOB]\n      groups: [S0BILLINGLEADS]\n      channel: C0SUPPORT\n",
  ]);
  const h = await startHarness({ script: scriptByAgent(escalationScript()), agentsFile });
  const { ts, escalation } = await escalated(h);
  assert.deepEqual(escalation.owner, { kind: "people", id: "U0ALICE,U0BOB,S0BILLINGLEADS" });
  const notice = await h.until("the notice in #support", async () =>
    h.slack.messagesIn("C0SUPPORT").find((m) => String(m.text).includes("needs a person")),
  );
  assert.match(String(notice.text), /^<@U0ALICE> <@U0BOB> <!subteam\^S0BILLINGLEADS> /);

  await h.clickCard("U0BYSTANDER", ESCALATION_TAKE_OVER, escalation, ts);
  const told = await h.until("the bystander to be told", async () =>
    h.slack.ephemerals.find((e) => e.user === "U0BYSTANDER"),
  );
  assert.match(
    String(told.text),
    /^This escalation is for <@U0ALICE>, <@U0BOB>, <!subteam\^S0BILLINGLEADS>; only they/,
  );
  // The second person named, not only the first.
  await h.clickCard("U0BOB", ESCALATION_TAKE_OVER, escalation, ts);
  await h.until("Bob to hold the task", async () => {
    const row = await taskOfThread(h.db.db, ts);
    return row?.owner_id === "U0BOB" ? row : undefined;
  });
  assert.deepEqual(await statusOf(h, escalation.id), { status: "taken_over", decided_by: "U0BOB" });
});
