import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { loadAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { AUDIT_PAGE } from "../../src/slack/views/audit-story.ts";
import { CHANNEL, type Harness, REQUESTER, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { whereIsMyOrderScript } from "../support/scripts.ts";
import { finishedTask } from "../support/scripts-humans.ts";
import { blockActionsPayload } from "../support/slack-signing.ts";
import { runBaton } from "../support/slash-command.ts";

// `/baton status|audit|who|done` and the audit pager answer only about tasks the asker may read:
// asked from the task's channel, or by its requester, a human on it, or a supervisor. A task's
// story (customer text, tool arguments, amounts) must not reach anyone else from anywhere else.

const STRANGER = "U0STRANGER";
const SUPERVISOR = "U0BOSS";
const APPROVER = "U0APPROVER";
/** A member of S0BILLINGLEADS in the emulator. */
const BILLING_LEAD = "U0LEE";
const ELSEWHERE = "C0ELSEWHERE";
const PRIVATE = "C0PRIVATE";
const REQUESTER_DM = "D0REQUESTER";
const PRIVATE_TEXT = "PRIVATE-CUSTOMER-TEXT";
const REFUSED =
  "No task you can read here matches that reference. Give a task id, an order id or a link to its thread; if the thread is in another channel, run the command there, or ask its requester or a supervisor.";
/** The same for a task id, whether a task has it or not: the asker gave one, so none is asked for. */
const REFUSED_BY_ID =
  "No task you can read here has that id. If its thread is in another channel, run the command there, or ask its requester or a supervisor.";
const refusedWords = (ref: string) => (/^[0-9a-f]{8}-/.test(ref) ? REFUSED_BY_ID : REFUSED);

let h: Harness;
/** Flow 1 on order 1042, asked by REQUESTER in CHANNEL. */
let publicTask: string;
/** A later task on the same order, in a private channel, owned by the billing leads' group. */
let privateTask: string;

before(async () => {
  const file = await loadAgentsFile(
    fileURLToPath(new URL("../../agents.yml", import.meta.url)),
    new Set(demoTools.map((t) => t.name)),
  );
  h = await startHarness({
    script: scriptByAgent(whereIsMyOrderScript()),
    // Every demo agent is autonomous, so supervisors change no gate of flow 1.
    agentsFile: {
      ...file,
      policies: { ...file.policies, supervisors: { users: [SUPERVISOR], groups: [] } },
    },
  });
  const { ts } = await h.mention("where is order 1042?");
  const task = await h.until("flow 1 to finish", () => finishedTask(h.db.db, ts));
  publicTask = task.id;
  privateTask = await seedPrivateTask();
});
after(async () => {
  await h.close();
});

/** A refund on order 1042 asked in a private channel: a billing lead was asked to approve it. */
async function seedPrivateTask(): Promise<string> {
  const db = h.db.db;
  const { id } = await db
    .insertInto("tasks")
    .values({
      channel_id: PRIVATE,
      thread_ts: "1700000999.000100",
      requester_id: "U0PRIVATEASKER",
      title: `Refund order 1042: ${PRIVATE_TEXT}`,
      request_text: PRIVATE_TEXT,
      status: "waiting_human",
      owner_kind: "human",
      owner_id: "S0BILLINGLEADS",
      handback_stack: "[]",
      facts: JSON.stringify({ order_id: "1042" }),
      cost_usd: 0,
    })
    .returning("id")
    .executeTakeFirstOrThrow();
  await db
    .insertInto("handoffs")
    .values({
      task_id: id,
      step_no: 1,
      kind: "approval_request",
      from_kind: "agent",
      from_id: "billing",
      to_kind: "human",
      to_id: `${APPROVER},S0BILLINGLEADS`,
      note: "{}",
    })
    .execute();
  await db
    .insertInto("tool_calls")
    .values({
      task_id: id,
      step_no: 1,
      agent_id: "billing",
      tool: "issue_refund",
      tool_class: "write",
      args: JSON.stringify({ order_id: "1042", amount_usd: 4321 }),
      idempotency_key: `${id}:1:0`,
      status: "pending_approval",
      allowed_by: null,
    })
    .execute();
  await db
    .insertInto("audit_events")
    .values({
      task_id: id,
      actor_kind: "human",
      actor_id: "U0PRIVATEASKER",
      kind: "message_received",
      data: JSON.stringify({ text: PRIVATE_TEXT }),
    })
    .execute();
  return id;
}

const ask = (user: string, channel: string, text: string) => runBaton(h, text, { user, channel });

/** The whole answer, text and blocks, holds nothing of either task. */
function assertRevealsNothing(answer: { text: string; blocks: string }) {
  const all = answer.text + answer.blocks;
  for (const secret of [
    publicTask,
    privateTask,
    CHANNEL,
    PRIVATE,
    PRIVATE_TEXT,
    "where is order",
    "Customer Service",
    "adjust_stock",
    "issue_refund",
    "4321",
    "done",
  ])
    assert.ok(!all.includes(secret), `the answer names ${secret}: ${all}`);
}

test("anyone may read a task from its own channel", async () => {
  const status = await ask(STRANGER, CHANNEL, `status ${publicTask}`);
  assert.match(status.text, /done, owned by Customer Service/);
  const audit = await ask(STRANGER, CHANNEL, `audit ${publicTask}`);
  assert.ok(audit.blocks.includes("adjust_stock"));
});

test("the requester may read their task from a DM or another channel", async () => {
  for (const channel of [REQUESTER_DM, ELSEWHERE]) {
    const audit = await ask(REQUESTER, channel, `audit ${publicTask}`);
    assert.ok(audit.blocks.includes("adjust_stock"), channel);
  }
  // Of the order's tasks, the newest they may read: not the private one asked after theirs.
  const status = await ask(REQUESTER, REQUESTER_DM, "status 1042");
  assert.match(status.text, /done, owned by Customer Service/);
  assert.ok(!status.text.includes(PRIVATE_TEXT));
});

test("an unrelated person elsewhere is refused, told what to do, and shown nothing", async () => {
  for (const command of ["status", "audit", "who", "done"])
    for (const ref of [publicTask, privateTask, "1042"]) {
      const answer = await ask(STRANGER, ELSEWHERE, `${command} ${ref}`);
      assert.ok(answer.ephemeral);
      assert.equal(answer.text, refusedWords(ref), `${command} ${ref}`);
      assertRevealsNothing(answer);
    }
  // A reference that names no task gets the same words: /baton does not say whether order 99999
  // has a task somewhere else.
  for (const command of ["status", "audit", "who", "done"]) {
    assert.equal((await ask(STRANGER, ELSEWHERE, `${command} 99999`)).text, REFUSED);
    const noTask = `${command} 0b7e5c2a-1111-4222-8333-444455556666`;
    assert.equal((await ask(STRANGER, ELSEWHERE, noTask)).text, REFUSED_BY_ID);
  }
});

test("a human on the task, through a group too, and a supervisor may read it from anywhere", async () => {
  for (const user of [APPROVER, BILLING_LEAD, SUPERVISOR]) {
    const audit = await ask(user, ELSEWHERE, `audit ${privateTask}`);
    assert.ok(audit.blocks.includes(PRIVATE_TEXT), user);
  }
  assert.match((await ask(BILLING_LEAD, ELSEWHERE, "status 1042")).text, new RegExp(PRIVATE_TEXT));
  // An approver of the private task is no one on the public one.
  assert.equal((await ask(APPROVER, ELSEWHERE, `audit ${publicTask}`)).text, REFUSED_BY_ID);
});

test("/baton who on an order keeps the readable tasks and counts the others", async () => {
  const requester = (await ask(REQUESTER, REQUESTER_DM, "who 1042")).text;
  assert.match(requester, /adjust_stock/);
  assert.ok(
    !requester.includes("issue_refund") && !requester.includes("amount_usd=4321"),
    requester,
  );
  assert.match(requester, /1 more task of this reference is withheld/);

  const refundTool = (await ask(REQUESTER, REQUESTER_DM, "who 1042 issue_refund")).text;
  assert.match(refundTool, /^No issue_refund tool calls for this reference\.\n1 more task/);

  const inPrivate = (await ask(STRANGER, PRIVATE, "who 1042")).text;
  assert.match(inPrivate, /`issue_refund` \(order_id="1042", amount_usd=4321\)/);
  assert.ok(!inPrivate.includes("adjust_stock"), inPrivate);
  assert.match(inPrivate, /1 more task of this reference is withheld/);

  const supervisor = (await ask(SUPERVISOR, ELSEWHERE, "who 1042")).text;
  assert.match(supervisor, /adjust_stock/);
  assert.match(supervisor, /issue_refund/);
  assert.ok(!supervisor.includes("withheld"), supervisor);
});

/** Clicks the audit story's next-page button as `user` in `channel`; returns what Baton answered. */
async function clickNextPage(user: string, channel: string, taskId: string) {
  const before = h.slack.callsTo("response_url").length;
  const res = await h.click(
    blockActionsPayload({
      userId: user,
      actionId: AUDIT_PAGE,
      value: `${taskId}:2`,
      channel,
      messageTs: "1700000000.000900",
      responseUrl: h.slack.responseUrl,
    }),
  );
  assert.equal(res.status, 200);
  const reply = await h.until("the page", async () => h.slack.callsTo("response_url").at(before));
  return { text: String(reply.args.text), blocks: JSON.stringify(reply.args.blocks ?? []) };
}

test("the audit pager is checked at each click, as the command is", async () => {
  const allowed = await clickNextPage(STRANGER, CHANNEL, publicTask);
  assert.match(allowed.text, /^Audit story for task/);
  const own = await clickNextPage(REQUESTER, REQUESTER_DM, publicTask);
  assert.match(own.text, /^Audit story for task/);

  // A button value is the task id: anyone can send one for any task, from anywhere.
  for (const taskId of [publicTask, privateTask]) {
    const refused = await clickNextPage(STRANGER, ELSEWHERE, taskId);
    assert.equal(refused.text, REFUSED_BY_ID);
    assertRevealsNothing(refused);
  }
});
