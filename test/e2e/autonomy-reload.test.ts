import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { describe, test } from "node:test";
import { sql } from "kysely";
import { loadAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { auditStory } from "../../src/runtime/audit-story.ts";
import { APPROVAL_APPROVE, APPROVAL_REJECT } from "../../src/slack/views/approval-card.ts";
import {
  REJECT_REASON_ACTION,
  REJECT_REASON_BLOCK,
  REJECT_REASON_CALLBACK,
} from "../../src/slack/views/reject-modal.ts";
import { agentsYmlWith, harnessPerTest } from "../support/harness.ts";
import type { Script } from "../support/model-server.ts";
import { taskWithStatus, textOf, waitForApprovalCard } from "../support/observe.ts";
import {
  auditKinds,
  blockTexts,
  buttonsOf,
  finishedTask,
  missApprovalDeadline,
  refundsOf,
  taskOfThread,
} from "../support/scripts-humans.ts";
import { viewSubmissionPayload } from "../support/slack-signing.ts";
import { runBaton } from "../support/slash-command.ts";
import { tempAgentsFile } from "../support/temp-agents-file.ts";

// An operator moves an agent between autonomy phases by editing the agents file and sending SIGHUP
// while the agent's model is answering: what its answer does is judged by one file, the new one.

const BILLING_TOOLS = "    tools: [lookup_order, issue_refund]\n";
const SUPERVISORS = "  # supervisors:\n  #   groups: [S0SUPERVISORS]\n";
const LARGE_REFUNDS = / {2}approvals:\n {4}- id: large-refunds\n(?: {6,}.*\n)+/;

/** agents.yml with Billing in `mode`, U0SUP its supervisor, and without large-refunds if asked. */
function agentsYml(mode: string, o: { largeRefunds?: boolean } = {}): string {
  const text = agentsYmlWith(
    [BILLING_TOOLS, `${BILLING_TOOLS}    autonomy: ${mode}\n`],
    [SUPERVISORS, "  supervisors:\n    users: [U0SUP]\n"],
  );
  return o.largeRefunds === false ? text.replace(LARGE_REFUNDS, "  approvals: []\n") : text;
}

/**
 * Billing asks for a refund of `amountUsd` for order 1077 under the agents file `file`, written as
 * `yml` (which it reloads from); the card is in Slack.
 */
async function parkRefund(
  startHarness: ReturnType<typeof harnessPerTest>,
  file: string,
  yml: string,
  amountUsd: number,
) {
  await writeFile(file, yml);
  const script: Script = (request) => {
    const last = request.messages.at(-1);
    if (last?.role === "tool") return { content: `noted: ${textOf(last)}` };
    const args = { order_id: "1077", amount_usd: amountUsd, reason: "broken lamp" };
    return { toolCalls: [{ name: "issue_refund", arguments: args }] };
  };
  const h = await startHarness({
    script,
    agentsFile: await loadAgentsFile(file, demoTools),
    agentsPath: file,
  });
  const { ts } = await h.mention("billing: refund order 1077, the lamp arrived broken");
  return { h, ts, card: await waitForApprovalCard(h) };
}

describe("autonomy-reload-mid-turn", async () => {
  const startHarness = harnessPerTest();
  const file = tempAgentsFile("baton-autonomy-");

  /**
   * Billing starts with `from`; while its model answers the refund request the operator reloads
   * `to`, and the answer asks for a 149 USD refund. Returns the call's status and what ran.
   */
  async function refundAcrossReload(from: string, to: string) {
    await writeFile(file, from);
    let reloaded: boolean | undefined;
    const script: Script = async (request) => {
      const last = request.messages.at(-1);
      if (last?.role === "tool") return { content: `noted: ${textOf(last)}` };
      await writeFile(file, to);
      reloaded = await h.baton.reloadAgents();
      const args = { order_id: "1077", amount_usd: 149, reason: "broken lamp" };
      return { toolCalls: [{ name: "issue_refund", arguments: args }] };
    };
    const h = await startHarness({
      script,
      agentsFile: await loadAgentsFile(file, demoTools),
      agentsPath: file,
    });
    const { ts } = await h.mention("billing: refund order 1077, the lamp arrived broken");
    const call = await h.until("the refund call settled for now", async () => {
      const row = await h.db.db
        .selectFrom("tool_calls")
        .select(["status", "allowed_by"])
        .where("tool", "=", "issue_refund")
        .executeTakeFirst();
      return row && (row.status !== "done" || (await taskWithStatus(h.db.db, ts, "done")))
        ? row
        : undefined;
    });
    assert.equal(reloaded, true);
    const approval = await h.db.db.selectFrom("approvals").selectAll().executeTakeFirst();
    return { call, approval };
  }

  test("an autonomous agent made supervised mid-turn waits for its supervisor, though the reload dropped the policy that gated the call", async () => {
    const { call, approval } = await refundAcrossReload(
      agentsYml("autonomous"),
      agentsYml("supervised", { largeRefunds: false }),
    );
    // Under either file a person decides this refund: under the old one a billing lead, under the
    // new one the supervisor. It must not run on nobody's word.
    assert.equal(call.status, "pending_approval", JSON.stringify(call));
    assert.equal(approval?.policy_id, "supervised");
    assert.deepEqual(approval?.approvers, { users: ["U0SUP"], groups: [] });
  });

  test("an agent put in shadow mode while its model answers proposes the write, and runs nothing", async () => {
    const { call, approval } = await refundAcrossReload(
      agentsYml("autonomous", { largeRefunds: false }),
      agentsYml("shadow", { largeRefunds: false }),
    );
    assert.equal(call.status, "shadowed", JSON.stringify(call));
    assert.equal(approval, undefined);
  });
});

// An approval still waiting when a reload (or a restart) means its call would no longer run is
// cancelled by Baton: its card says so, without buttons, and the agent is told the call did not run.
describe("autonomy-demoted-while-waiting", async () => {
  const startHarness = harnessPerTest();
  const file = tempAgentsFile("baton-demoted-");

  /** Billing, supervised, asks U0SUP to approve a 40 USD refund; the card is in Slack. */
  const parked = () => parkRefund(startHarness, file, agentsYml("supervised"), 40);
  type Parked = Awaited<ReturnType<typeof parked>>;

  /** The card's updates in Slack, as their texts, oldest first. */
  const updatesOf = ({ h, card }: Parked) =>
    h.slack.callsTo("chat.update").filter((c) => !c.failed && c.args.ts === card.card_ts);

  /** The call's row once its task is done and has said everything. */
  async function settled(p: Parked) {
    await p.h.until("the task to finish", () => finishedTask(p.h.db.db, p.ts));
    return p.h.db.db
      .selectFrom("tool_calls")
      .select(["status", "allowed_by", "result"])
      .where("tool", "=", "issue_refund")
      .executeTakeFirstOrThrow();
  }

  const ephemeralsTo = (p: Parked, user: string) =>
    p.h.slack.callsTo("chat.postEphemeral").filter((c) => c.args.user === user);

  /** U0SUP clicks Approve on the card: what they are told. */
  async function approveClickTold(p: Parked): Promise<string> {
    await p.h.clickCard("U0SUP", APPROVAL_APPROVE, p.card, p.ts);
    const told = await p.h.until("the clicker to be told", async () => ephemeralsTo(p, "U0SUP")[0]);
    return String(told.args.text);
  }

  test("a reload that puts the agent in shadow mode cancels its waiting approval at once: the card says why, without buttons, and the agent carries on", async () => {
    const p = await parked();
    await writeFile(file, agentsYml("shadow"));
    assert.equal(await p.h.baton.reloadAgents(), true);

    // Nobody clicks: the reload alone settles it.
    const update = await p.h.until("the card to say it was cancelled", async () =>
      updatesOf(p).find((c) => /Cancelled/.test(blockTexts(c).join("\n"))),
    );
    assert.match(
      blockTexts(update).join("\n"),
      /🚫 Cancelled <!date\^\d+\^[^>]+>: the agents file put Billing in shadow mode, where it only proposes writes, so it can no longer be approved\. Nothing was done\./,
    );
    assert.deepEqual(buttonsOf(update), [], "nothing left to click");
    const call = await settled(p);
    assert.equal(call.status, "not_run", JSON.stringify(call));
    assert.equal(call.allowed_by, null, "nobody allowed it");
    const told = p.h.model.requestsFor("billing").at(-1)?.body.messages.at(-1);
    assert.ok(told);
    assert.match(
      textOf(told),
      /was not run, and nobody can approve it now: the agents file put Billing in shadow mode/,
    );
    const task = await taskOfThread(p.h.db.db, p.ts);
    assert.ok(task);
    const decided = await auditKinds(p.h.db.db, task.id, "approval_decided");
    assert.deepEqual(
      decided.map((e) => [e.actor_kind, e.data.decision]),
      [["system", "cancelled"]],
    );
    const story = (await auditStory(p.h.baton.deps, task.id)).entries.map((e) => e.text);
    assert.ok(
      story.some((line) =>
        /^Approval of issue_refund\(.*\) cancelled: the agents file put Billing in shadow mode/.test(
          line,
        ),
      ),
      story.join("\n"),
    );
    assert.ok(
      story.some((line) => /→ not_run; not run: the agents file changed first$/.test(line)),
      story.join("\n"),
    );

    // A click on the old card afterwards decides nothing, and says why.
    assert.match(
      await approveClickTold(p),
      /^This request was cancelled <!date\^\d+\^[^>]+>: the agents file put Billing in shadow mode, where it only proposes writes, so it can no longer be approved\. Nothing was done\.$/,
    );
    assert.equal((await refundsOf(p.h.db.db)).length, 0);
    assert.equal(p.h.model.requestsFor("billing").length, 2, "billing carried on once");
    assert.equal(updatesOf(p).length, 1, "the card changed once");
    const report = (await runBaton(p.h, "agents", { user: "U0SUP" })).text;
    const billing = report.slice(report.indexOf("*Billing*"));
    assert.match(
      billing,
      /1 write asked a person: 0 approved, 1 cancelled \(the agents file changed first\)/,
    );
  });

  test("a supervisor taken out of policies.supervisors by a reload may no longer approve", async () => {
    const p = await parked();
    await writeFile(
      file,
      agentsYml("supervised").replace("users: [U0SUP]", "users: [U0BILLINGLEAD]"),
    );
    assert.equal(await p.h.baton.reloadAgents(), true);
    assert.equal(
      await approveClickTold(p),
      "The agents file no longer names you to decide on `issue_refund` (policy `supervised`), so nothing was done. Nobody else this card asked is named for it now, so it waits for its deadline.",
    );
    const approval = await p.h.db.db
      .selectFrom("approvals")
      .select(["status", "policy_id"])
      .executeTakeFirstOrThrow();
    assert.deepEqual(approval, { status: "pending", policy_id: "supervised" });
    assert.equal((await refundsOf(p.h.db.db)).length, 0);
  });

  test("a reload that takes the tool from the agent cancels its waiting approval, in words", async () => {
    const p = await parked();
    await writeFile(
      file,
      agentsYml("supervised").replace(BILLING_TOOLS, "    tools: [lookup_order]\n"),
    );
    assert.equal(await p.h.baton.reloadAgents(), true);
    const update = await p.h.until("the card to say it was cancelled", async () =>
      updatesOf(p).find((c) => /Cancelled/.test(blockTexts(c).join("\n"))),
    );
    assert.match(
      blockTexts(update).join("\n"),
      /: the agents file no longer lets Billing issue a refund, so it can no longer be approved\./,
    );
    assert.equal((await settled(p)).status, "not_run");
  });

  /**
   * The click and the reload's claims both sent while a transaction holds the approval's row, so
   * both wait on it, `first` ahead: its claim takes the row, and the other finds it decided.
   */
  async function clickAndReloadAtOnce(p: Parked, first: "click" | "reload") {
    const gate = Promise.withResolvers<void>();
    const held = Promise.withResolvers<void>();
    const holder = p.h.db.db.transaction().execute(async (tx) => {
      await tx
        .selectFrom("approvals")
        .select("id")
        .where("id", "=", p.card.id)
        .forUpdate()
        .execute();
      held.resolve();
      await gate.promise;
    });
    await held.promise;
    const claimsWaiting = (n: number) =>
      p.h.until(`${n} claims waiting on the approval`, async () => {
        const { rows } = await sql<{ n: number }>`
          select count(*)::int as n from pg_stat_activity
          where datname = current_database() and wait_event_type = 'Lock'
            and query ilike 'update "approvals"%'`.execute(p.h.db.db);
        return (rows[0]?.n ?? 0) >= n;
      });
    const click = () => p.h.clickCard("U0SUP", APPROVAL_APPROVE, p.card, p.ts);
    const reload = () => p.h.baton.reloadAgents();
    const ahead = first === "click" ? click() : reload();
    await claimsWaiting(1);
    const behind = first === "click" ? reload() : click();
    await claimsWaiting(2);
    gate.resolve();
    await Promise.all([holder, ahead, behind]);
  }

  for (const first of ["click", "reload"] as const)
    test(`a click and a reload that claim the approval at once settle it once (${first} first)`, async () => {
      const p = await parked();
      await writeFile(file, agentsYml("shadow"));
      await clickAndReloadAtOnce(p, first);

      const call = await settled(p);
      const approval = await p.h.db.db
        .selectFrom("approvals")
        .selectAll()
        .executeTakeFirstOrThrow();
      const task = await taskOfThread(p.h.db.db, p.ts);
      assert.ok(task);
      assert.equal((await auditKinds(p.h.db.db, task.id, "approval_decided")).length, 1);
      assert.equal((await auditKinds(p.h.db.db, task.id, "tool_call")).length, 1, "settled once");
      assert.equal(call.status, "not_run", "the new file was in use when the call came to run");
      assert.equal((await refundsOf(p.h.db.db)).length, 0);
      assert.equal(p.h.model.requestsFor("billing").length, 2, "billing carried on once");
      const last = () =>
        updatesOf(p)
          .map((c) => blockTexts(c).join("\n"))
          .at(-1) ?? "";
      if (first === "click") {
        // Approved first: the reload found nothing waiting, and the run did not run it.
        assert.equal(approval.status, "approved");
        assert.equal(call.allowed_by, `approval:${approval.id} by U0SUP`);
        const told = p.h.model.requestsFor("billing").at(-1)?.body.messages.at(-1);
        assert.match(
          told ? textOf(told) : "",
          /approved this call, but it was not run: you are in shadow mode now/,
        );
        await p.h.until("the card to say it was approved and not run", async () =>
          /✅ Approved by <@U0SUP> .*not run: the agents file changed/.test(last()),
        );
        assert.equal(ephemeralsTo(p, "U0SUP").length, 0, "the click decided");
      } else {
        assert.equal(approval.status, "cancelled");
        assert.equal(call.allowed_by, null);
        await p.h.until("the card to say it was cancelled", async () =>
          /🚫 Cancelled/.test(last()),
        );
        const ephemeral = await p.h.until(
          "the clicker to be told",
          async () => ephemeralsTo(p, "U0SUP")[0],
        );
        assert.match(String(ephemeral.args.text), /^This request was cancelled /);
      }
      assert.ok(
        updatesOf(p).every((c) => buttonsOf(c).length === 0),
        "no update offers the buttons again",
      );
    });

  test("a restart with a file that no longer lets the call run cancels it; a click after is told why", async () => {
    const p = await parked();
    await writeFile(file, agentsYml("shadow"));
    await p.h.restart({ agentsFile: await loadAgentsFile(file, demoTools) });
    await p.h.until(
      "the approval to be cancelled without a click",
      async () =>
        (await p.h.db.db
          .selectFrom("approvals")
          .select("status")
          .where("id", "=", p.card.id)
          .executeTakeFirst()
          .then((a) => a?.status === "cancelled")) || undefined,
    );
    assert.match(
      await approveClickTold(p),
      /^This request was cancelled .*: the agents file put Billing in shadow mode/,
    );
    const call = await settled(p);
    assert.equal(call.status, "not_run");
    assert.equal(call.allowed_by, null, "the click approved nothing");
    await p.h.until("the card to say it was cancelled", async () =>
      updatesOf(p).find(
        (c) => /Cancelled/.test(blockTexts(c).join("\n")) && buttonsOf(c).length === 0,
      ),
    );
    assert.equal((await refundsOf(p.h.db.db)).length, 0);
  });
});

// A person taken out of an approval policy (a billing lead who left) decides nothing more, from the
// reload or restart on: the cards parked before still name them, but the file in use does not.
describe("approvers-offboarded", async () => {
  const startHarness = harnessPerTest();
  const file = tempAgentsFile("baton-offboarded-");

  const APPROVERS =
    "      approvers:\n        groups: [S0BILLINGLEADS]\n        users: [U0BILLINGLEAD]\n";
  const FALLBACK = "      fallback:\n        users: [U0OPSMANAGER]\n";

  /** agents.yml with large-refunds' approvers (and fallback) as given. */
  function withPeople(approvers: { users: string[]; groups: string[] }, fallback?: string[]) {
    const people = `      approvers:\n        groups: [${approvers.groups.join(", ")}]\n        users: [${approvers.users.join(", ")}]\n`;
    const edits: [string, string][] = [[APPROVERS, people]];
    if (fallback)
      edits.push([FALLBACK, `      fallback:\n        users: [${fallback.join(", ")}]\n`]);
    return agentsYmlWith(...edits);
  }

  /** Billing asks for a 149 USD refund under `yml`; the card is in Slack. */
  const parked = (yml: string) => parkRefund(startHarness, file, yml, 149);
  type Parked = Awaited<ReturnType<typeof parked>>;

  async function reload(p: Parked, yml: string) {
    await writeFile(file, yml);
    assert.equal(await p.h.baton.reloadAgents(), true);
  }

  const ephemeralsTo = (p: Parked, user: string) =>
    p.h.slack.callsTo("chat.postEphemeral").filter((c) => c.args.user === user);

  /** `user` clicks `action` on the card: the `n`th thing they are told (1-based). */
  async function clickTold(p: Parked, user: string, action = APPROVAL_APPROVE, n = 1) {
    await p.h.clickCard(user, action, p.card, p.ts);
    const told = await p.h.until(`${user} to be told`, async () => ephemeralsTo(p, user)[n - 1]);
    return String(told.args.text);
  }

  const approvalNow = (p: Parked) =>
    p.h.db.db
      .selectFrom("approvals")
      .selectAll()
      .where("id", "=", p.card.id)
      .executeTakeFirstOrThrow();

  async function refusals(p: Parked) {
    const task = await taskOfThread(p.h.db.db, p.ts);
    assert.ok(task);
    const rows = await auditKinds(p.h.db.db, task.id, "approval_refused");
    return rows.map((e) => [e.actor_id, e.data.reason, e.data.decision]);
  }

  /** The call's row once the task is done and has said everything. */
  async function settled(p: Parked) {
    await p.h.until("the task to finish", () => finishedTask(p.h.db.db, p.ts));
    return p.h.db.db
      .selectFrom("tool_calls")
      .select(["status", "allowed_by"])
      .where("tool", "=", "issue_refund")
      .executeTakeFirstOrThrow();
  }

  test("a user taken out of the policy by a reload may no longer approve or reject; one still named approves", async () => {
    const p = await parked(withPeople({ users: ["U0LEE", "U0BILLINGLEAD"], groups: [] }));
    await reload(p, withPeople({ users: ["U0BILLINGLEAD"], groups: [] }));

    assert.equal(
      await clickTold(p, "U0LEE"),
      "The agents file no longer names you to decide on `issue_refund` (policy `large-refunds`), so nothing was done. <@U0BILLINGLEAD> decides now.",
    );
    // Reject is refused before its form opens; a form opened before the reload is refused too.
    assert.match(await clickTold(p, "U0LEE", APPROVAL_REJECT, 2), /^The agents file no longer/);
    assert.equal(p.h.slack.callsTo("views.open").length, 0, "no reason form for them");
    await p.h.click(
      viewSubmissionPayload({
        userId: "U0LEE",
        callbackId: REJECT_REASON_CALLBACK,
        privateMetadata: p.card.id,
        values: { [REJECT_REASON_BLOCK]: { [REJECT_REASON_ACTION]: "not needed" } },
      }),
    );
    await p.h.until("the third refusal audited", async () => (await refusals(p)).length === 3);
    assert.deepEqual(await refusals(p), [
      ["U0LEE", "no_longer_named", "approved"],
      ["U0LEE", "no_longer_named", "rejected"],
      ["U0LEE", "no_longer_named", "rejected"],
    ]);
    assert.equal((await approvalNow(p)).status, "pending");
    assert.equal((await refundsOf(p.h.db.db)).length, 0);
    assert.equal(p.h.model.requestsFor("billing").length, 1, "billing was not resumed");
    const task = await taskOfThread(p.h.db.db, p.ts);
    assert.ok(task);
    const story = (await auditStory(p.h.baton.deps, task.id)).entries.map((e) => e.text);
    assert.ok(
      story.some((line) =>
        /Approval click refused: .*is no longer named for it \(large-refunds\) in the agents file/.test(
          line,
        ),
      ),
      story.join("\n"),
    );

    await p.h.clickCard("U0BILLINGLEAD", APPROVAL_APPROVE, p.card, p.ts);
    const call = await settled(p);
    assert.equal(call.status, "done");
    assert.equal(call.allowed_by, `approval:${p.card.id} by U0BILLINGLEAD`);
    assert.equal((await refundsOf(p.h.db.db)).length, 1);
  });

  test("a group taken out of the policy by a restart: its member may no longer decide; a named user rejects", async () => {
    const p = await parked(withPeople({ users: ["U0BILLINGLEAD"], groups: ["S0BILLINGLEADS"] }));
    await writeFile(file, withPeople({ users: ["U0BILLINGLEAD"], groups: [] }));
    await p.h.restart({ agentsFile: await loadAgentsFile(file, demoTools) });

    assert.match(
      await clickTold(p, "U0LEE"),
      /^The agents file no longer names you to decide on `issue_refund` .* <@U0BILLINGLEAD> decides now\.$/,
    );
    assert.deepEqual(await refusals(p), [["U0LEE", "no_longer_named", "approved"]]);
    assert.equal((await approvalNow(p)).status, "pending");

    await p.h.clickCard("U0BILLINGLEAD", APPROVAL_REJECT, p.card, p.ts);
    await p.h.slack.waitForCall("views.open");
    await p.h.click(
      viewSubmissionPayload({
        userId: "U0BILLINGLEAD",
        callbackId: REJECT_REASON_CALLBACK,
        privateMetadata: p.card.id,
        values: { [REJECT_REASON_BLOCK]: { [REJECT_REASON_ACTION]: "store credit given" } },
      }),
    );
    assert.equal((await settled(p)).status, "rejected");
    assert.equal((await approvalNow(p)).decided_by, "U0BILLINGLEAD");
    assert.equal((await refundsOf(p.h.db.db)).length, 0);
  });

  test("a policy gone from the agents file leaves the people its card asked to decide", async () => {
    const p = await parked(withPeople({ users: ["U0BILLINGLEAD"], groups: ["S0BILLINGLEADS"] }));
    await reload(p, agentsYmlWith().replace(LARGE_REFUNDS, "  approvals: []\n"));

    await p.h.clickCard("U0LEE", APPROVAL_APPROVE, p.card, p.ts);
    const call = await settled(p);
    assert.equal(call.status, "done");
    assert.equal(call.allowed_by, `approval:${p.card.id} by U0LEE`);
    assert.deepEqual(await refusals(p), []);
  });

  test("at the fallback: the one the agents file names now gets the card, not one taken out of it", async () => {
    const p = await parked(agentsYmlWith());
    await reload(p, withPeople({ users: ["U0BILLINGLEAD"], groups: [] }, ["U0CFO"]));
    await missApprovalDeadline(p.h.db.db, p.card.id);

    // The click moves it on to the file's fallback now: U0CFO, not U0OPSMANAGER, named at parking.
    assert.match(await clickTold(p, "U0OPSMANAGER"), /^Only <@U0CFO> may decide/);
    const approval = await approvalNow(p);
    assert.equal(approval.status, "pending");
    assert.ok(approval.escalated_at, "it went to the fallback");
    assert.deepEqual(approval.approvers, { users: ["U0CFO"], groups: [] });
    // A first approver is late, as before: it is the fallback's now.
    assert.match(await clickTold(p, "U0BILLINGLEAD"), /^This request passed its deadline/);
    await p.h.clickCard("U0CFO", APPROVAL_APPROVE, p.card, p.ts);
    assert.equal((await settled(p)).status, "done");
    assert.equal((await refundsOf(p.h.db.db)).length, 1);
  });
});
