import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { loadAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { agentsYmlWith, harnessPerTest } from "../support/harness.ts";
import type { Script } from "../support/model-server.ts";
import { taskWithStatus, textOf, waitForApprovalCard } from "../support/observe.ts";
import { blockTexts } from "../support/scripts-humans.ts";
import { runBaton } from "../support/slash-command.ts";

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

describe("autonomy-reload-mid-turn", async () => {
  const startHarness = harnessPerTest();
  let dir: string;
  let file: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "baton-autonomy-"));
    file = path.join(dir, "agents.yml");
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

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

describe("autonomy-demoted-while-waiting", async () => {
  const startHarness = harnessPerTest();
  let dir: string;
  let file: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "baton-demoted-"));
    file = path.join(dir, "agents.yml");
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("a supervised write approved after its agent was put back in shadow mode is counted as approved and not run, not as refused by the tool", async () => {
    await writeFile(file, agentsYml("supervised"));
    const script: Script = (request) => {
      const last = request.messages.at(-1);
      if (last?.role === "tool") return { content: `noted: ${textOf(last)}` };
      const args = { order_id: "1077", amount_usd: 40, reason: "broken lamp" };
      return { toolCalls: [{ name: "issue_refund", arguments: args }] };
    };
    const h = await startHarness({
      script,
      agentsFile: await loadAgentsFile(file, demoTools),
      agentsPath: file,
    });
    const { ts } = await h.mention("billing: refund order 1077, the lamp arrived broken");
    const card = await waitForApprovalCard(h);
    await writeFile(file, agentsYml("shadow"));
    assert.equal(await h.baton.reloadAgents(), true);
    await h.clickCard("U0SUP", APPROVAL_APPROVE, card, ts);
    await h.until("the answer", () => taskWithStatus(h.db.db, ts, "done"));

    const call = await h.db.db
      .selectFrom("tool_calls")
      .select(["status", "result"])
      .where("tool", "=", "issue_refund")
      .executeTakeFirstOrThrow();
    assert.equal(call.status, "not_run", JSON.stringify(call));
    const report = (await runBaton(h, "agents", { user: "U0SUP" })).text;
    const billing = report.slice(report.indexOf("*Billing*"));
    assert.match(
      billing,
      /1 write asked a person: 1 approved \(1 not run: the agents file changed first\)/,
    );
    assert.doesNotMatch(billing, /refused by the tool/);
    // The card said "Approved" at the click: it must not leave the approver thinking it ran.
    const updates = () =>
      h.slack
        .callsTo("chat.update")
        .filter((c) => !c.failed && c.args.ts === card.card_ts)
        .map((c) => blockTexts(c).join("\n"));
    const last = await h.until("the card to say the call did not run", async () =>
      updates().find((t) => /not run/.test(t)),
    );
    assert.match(last, /✅ Approved by <@U0SUP> .*not run: the agents file changed/);
    assert.equal(updates().at(-1), last, "no update after it says approved again");
  });
});
