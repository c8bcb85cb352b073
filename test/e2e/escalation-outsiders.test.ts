import assert from "node:assert/strict";
import { test } from "node:test";
import { auditStory } from "../../src/runtime/audit-story.ts";
import {
  ESCALATION_SEND_BACK,
  ESCALATION_TAKE_OVER,
} from "../../src/slack/views/escalation-card.ts";
import { agentsFileWith, type Harness, harnessPerTest, SUPPORT_LANE } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForEscalationCard } from "../support/observe.ts";
import { escalationScript, sendBackSubmission, taskOfThread } from "../support/scripts-humans.ts";

// A lane owned by a channel's members, when that channel is shared with another organization
// (Slack Connect): its members include that organization's people, who must not own the company's
// work nor instruct its agents. Slack names each clicker's own team (`user.team_id`), and Baton's
// own workspace and Enterprise organization by auth.test (the emulator's team is T0TESTTEAM).

const startHarness = harnessPerTest();

const SUPPORT_LEAD = "U0SUPPORTLEAD";
/** A member of #support from the partner company the channel is shared with. */
const PARTNER = "U0PARTNER";
const PARTNER_TEAM = "T0PARTNER";

/** #support, shared with the partner's team; Customer Service escalates to its lane. */
async function escalated(h: Harness) {
  h.slack.setChannel({ id: "C0SUPPORT", members: [SUPPORT_LEAD, "U0OTHER", PARTNER] });
  const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(h);
  assert.deepEqual(escalation.owner, { kind: "channel", id: "C0SUPPORT" });
  return { ts, escalation };
}

function toldTo(h: Harness, user: string, count = 1) {
  return h.until(`${user} to be told ${count} time(s)`, async () => {
    const told = h.slack.ephemerals.filter((e) => e.user === user);
    return told.length >= count ? told : undefined;
  });
}

async function heldBy(h: Harness, ts: string, user: string) {
  return h.until(`${user} to hold the task`, async () => {
    const task = await taskOfThread(h.db.db, ts);
    return task?.owner_id === user ? task : undefined;
  });
}

test("a person of another organization in the lane's channel is refused at the button and at the form; nothing changes; it is audited", async () => {
  const h = await startHarness({ script: scriptByAgent(escalationScript()) });
  const { ts, escalation } = await escalated(h);

  await h.clickCard(PARTNER, ESCALATION_TAKE_OVER, escalation, ts, PARTNER_TEAM);
  await h.clickCard(PARTNER, ESCALATION_SEND_BACK, escalation, ts, PARTNER_TEAM);
  const told = await toldTo(h, PARTNER, 2);
  for (const words of told)
    assert.equal(
      words.text,
      "Work for the members of <#C0SUPPORT> is for people of Baton Test, so you can't take it over or send it back. To let someone of another organization decide, the lane's owners can be named in Baton's agents file.",
    );
  assert.equal(h.slack.callsTo("views.open").length, 0, "no form for them");

  // A form submitted all the same (opened before, or forged) is checked again.
  await h.click(
    sendBackSubmission({
      userId: PARTNER,
      escalationId: escalation.id,
      agent: { id: "customer-service", name: "Customer Service" },
      instruction: "Refund 5,000 USD and close the incident.",
      teamId: PARTNER_TEAM,
    }),
  );
  const dm = await h.until("the partner to be told by DM", async () =>
    h.slack.callsTo("chat.postMessage").find((c) => c.args.channel === PARTNER),
  );
  assert.match(String(dm.args.text), /is for people of Baton Test.*Nothing changed\.$/s);

  const row = await h.db.db
    .selectFrom("escalations")
    .select(["status", "decided_by"])
    .where("id", "=", escalation.id)
    .executeTakeFirstOrThrow();
  assert.deepEqual(row, { status: "open", decided_by: null });
  const task = await taskOfThread(h.db.db, ts);
  assert.deepEqual([task?.owner_id, task?.status], ["C0SUPPORT", "waiting_human"]);
  const refused = await h.db.db
    .selectFrom("audit_events")
    .select(["actor_id", "data"])
    .where("kind", "=", "escalation_refused")
    .execute();
  assert.equal(refused.length, 3);
  for (const event of refused) {
    assert.equal(event.actor_id, PARTNER);
    assert.deepEqual(event.data, {
      escalation_id: escalation.id,
      owner: { kind: "channel", id: "C0SUPPORT" },
      reason: "outside_organization",
      team_id: PARTNER_TEAM,
    });
  }
  const { entries } = await auditStory(h.baton.deps, "1077");
  const line = entries.find((e) => e.kind === "escalation_refused")?.text ?? "";
  assert.match(line, /refused: they are of another organization/);

  // A member of Baton's own workspace still takes it over.
  await h.clickCard(SUPPORT_LEAD, ESCALATION_TAKE_OVER, escalation, ts);
  await heldBy(h, ts, SUPPORT_LEAD);
});

test("in an Enterprise organization, its people (Slack names the organization as their team) decide; another's do not", async () => {
  const h = await startHarness({
    script: scriptByAgent(escalationScript()),
    slackEnterpriseId: "E0ACME",
  });
  const { ts, escalation } = await escalated(h);

  await h.clickCard(PARTNER, ESCALATION_TAKE_OVER, escalation, ts, "E0OTHERORG");
  const [told] = await toldTo(h, PARTNER);
  assert.match(String(told?.text), /^Work for the members of <#C0SUPPORT> is for people of/);

  await h.clickCard(SUPPORT_LEAD, ESCALATION_TAKE_OVER, escalation, ts, "E0ACME");
  await heldBy(h, ts, SUPPORT_LEAD);
});

test("a click whose team Slack does not say is judged by channel membership alone", async () => {
  const h = await startHarness({ script: scriptByAgent(escalationScript()) });
  const { ts, escalation } = await escalated(h);

  await h.clickCard(SUPPORT_LEAD, ESCALATION_TAKE_OVER, escalation, ts, null);
  await heldBy(h, ts, SUPPORT_LEAD);
});

test("a lane that names people is theirs, whatever their organization", async () => {
  const agentsFile = agentsFileWith([
    SUPPORT_LANE,
    `    support:\n      users: [${PARTNER}]\n      channel: C0SUPPORT\n`,
  ]);
  const h = await startHarness({ script: scriptByAgent(escalationScript()), agentsFile });
  const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(h);
  assert.deepEqual(escalation.owner, { kind: "user", id: PARTNER });

  await h.clickCard(PARTNER, ESCALATION_TAKE_OVER, escalation, ts, PARTNER_TEAM);
  await heldBy(h, ts, PARTNER);
});
