import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import pg from "pg";
import type { Db } from "../../src/db/database.ts";
import { parseTaskRef, resolveTaskRef } from "../../src/db/reports.repository.ts";
import { NotFoundError } from "../../src/errors.ts";
import {
  type AuditEntry,
  auditCsv,
  auditJson,
  auditStory,
  auditText,
  parseCsv,
  whoProcessed,
  whoProcessedText,
} from "../../src/runtime/audit-story.ts";
import { createTestDatabase, type TestDatabase, testServerUrl } from "../support/db.ts";

const T0 = Date.parse("2025-01-06T09:00:00Z");
const at = (minutes: number) => new Date(T0 + minutes * 60_000);
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

async function insertTask(db: Db, values: { thread: string; title: string; facts?: object }) {
  const row = await db
    .insertInto("tasks")
    .values({
      channel_id: "C0SUPPORT",
      thread_ts: values.thread,
      requester_id: "U0DANA",
      title: values.title,
      request_text: values.title,
      owner_kind: "agent",
      owner_id: "cs",
      handback_stack: "[]",
      facts: JSON.stringify(values.facts ?? {}),
      cost_usd: 0,
      created_at: at(0),
    })
    .returning("id")
    .executeTakeFirstOrThrow();
  return row.id;
}

const event = (taskId: string, minute: number, actor: string, kind: string, data: object) => {
  const [actorKind = "system", actorId = "baton"] = actor.split(":");
  return {
    task_id: taskId,
    at: at(minute),
    actor_kind: actorKind,
    actor_id: actorId,
    kind,
    data: JSON.stringify(data),
  };
};

const modelCall = (taskId: string, step: number, minute: number, agent: string) => ({
  task_id: taskId,
  step_no: step,
  agent_id: agent,
  model: "gpt-4o-mini",
  prompt_tokens: 1000 + step,
  completion_tokens: 50,
  cost_usd: 0.00021,
  latency_ms: 800,
  request_chars: 4000,
  outcome: "ok",
  created_at: at(minute),
});

/** Flow 2 by hand: a return, a rejected refund with a reason, a smaller refund approved and run. */
async function seedReturn(db: Db): Promise<string> {
  const task = await insertTask(db, {
    thread: "1700000000.000100",
    title: "Return order 1077",
    facts: { order_id: "1077" },
  });
  const [rejected, approved] = await db
    .insertInto("approvals")
    .values(
      [149, 139].map((amount, i) => ({
        task_id: task,
        step_no: 2 + i,
        tool_call_id: `${task}:${2 + i}:0`,
        model_call_id: `call_${i}`,
        agent_id: "billing",
        tool: "issue_refund",
        args: JSON.stringify({ order_id: "1077", amount_usd: amount }),
        policy_id: "refunds-over-100",
        requester_id: "U0DANA",
        approvers: JSON.stringify({ users: ["U0LEE"], groups: [] }),
        status: i === 0 ? "rejected" : "approved",
        decided_by: "U0LEE",
        decided_at: at(4 + 2 * i),
        reason: i === 0 ? "Shipping is not refundable" : null,
        expires_at: at(240),
        created_at: at(3 + 2 * i),
      })),
    )
    .returning("id")
    .execute();
  assert.ok(rejected && approved);
  const key = (step: number) => `${task}:${step}:0`;
  await db
    .insertInto("tool_calls")
    .values([
      toolCall(task, 1, "cs", "lookup_order", "read", "done", key(1), "policy:read", 1),
      toolCall(task, 2, "billing", "issue_refund", "write", "rejected", key(2), null, 3, 149),
      toolCall(
        task,
        3,
        "billing",
        "issue_refund",
        "write",
        "done",
        key(3),
        `approval:${approved.id} by U0LEE`,
        5,
      ),
    ])
    .execute();
  const refund = (amount: number) => ({ order_id: "1077", amount_usd: amount });
  await db
    .insertInto("model_calls")
    .values([
      modelCall(task, 0, 1, "cs"),
      modelCall(task, 1, 2, "cs"),
      modelCall(task, 2, 3, "billing"),
      modelCall(task, 3, 5, "billing"),
    ])
    .execute();
  await db
    .insertInto("audit_events")
    .values([
      event(task, 0, "human:U0DANA", "message_received", { text: "I want to return order 1077" }),
      event(task, 0, "system", "task_started", { agent: "cs" }),
      event(task, 1, "agent:cs", "tool_call", {
        tool: "lookup_order",
        args: { order_id: "1077" },
        status: "done",
        allowed_by: "policy:read",
      }),
      event(task, 2, "agent:cs", "handoff", {
        kind: "transfer",
        to: "billing",
        note: { summary: "Customer returns order 1077.", needed: "Refund 149 USD." },
      }),
      event(task, 3, "agent:billing", "approval_requested", {
        approval_id: rejected.id,
        tool: "issue_refund",
        args: refund(149),
        policy: "refunds-over-100",
        approvers: { users: ["U0LEE"], groups: [] },
        expires_at: at(240).toISOString(),
      }),
      event(task, 4, "human:U0LEE", "approval_decided", {
        approval_id: rejected.id,
        decision: "rejected",
        reason: "Shipping is not refundable",
        tool: "issue_refund",
        args: refund(149),
      }),
      event(task, 5, "agent:billing", "approval_requested", {
        approval_id: approved.id,
        tool: "issue_refund",
        args: refund(139),
        policy: "refunds-over-100",
        approvers: { users: ["U0LEE"], groups: [] },
        expires_at: at(240).toISOString(),
      }),
      event(task, 6, "human:U0LEE", "approval_decided", {
        approval_id: approved.id,
        decision: "approved",
        reason: null,
        tool: "issue_refund",
        args: refund(139),
      }),
      event(task, 7, "agent:billing", "tool_call", {
        tool: "issue_refund",
        args: refund(139),
        status: "done",
        allowed_by: `approval:${approved.id} by U0LEE`,
      }),
      event(task, 8, "agent:billing", "handoff", {
        kind: "hand_back",
        to: "cs",
        note: { result: "Refunded 139 USD." },
      }),
      event(task, 9, "agent:cs", "answer", {
        text: 'Refunded 139 USD, not 149: "shipping", sorry.\n=Thanks',
      }),
    ])
    .execute();
  return task;
}

function toolCall(
  taskId: string,
  step: number,
  agent: string,
  tool: string,
  toolClass: string,
  status: string,
  key: string,
  allowedBy: string | null,
  minute: number,
  amount = 139,
) {
  const args =
    tool === "issue_refund" ? { order_id: "1077", amount_usd: amount } : { order_id: "1077" };
  return {
    task_id: taskId,
    step_no: step,
    agent_id: agent,
    tool,
    tool_class: toolClass,
    args: JSON.stringify(args),
    idempotency_key: key,
    status,
    result: "null",
    allowed_by: allowedBy,
    created_at: at(minute),
  };
}

describe("audit story", () => {
  let database: TestDatabase;
  let db: Db;
  let taskId: string;
  before(async () => {
    database = await createTestDatabase();
    db = database.db;
    taskId = await seedReturn(db);
  });
  after(() => database.drop());

  test("tells the whole story in order, model calls first within a turn", async () => {
    const story = await auditStory({ db }, taskId);
    assert.deepEqual(story.taskIds, [taskId]);
    assert.deepEqual(
      story.entries.map((e) => `${e.actor} ${e.kind}`),
      [
        "human:U0DANA message_received",
        "system task_started",
        "agent:cs model_call",
        "agent:cs tool_call",
        "agent:cs model_call",
        "agent:cs handoff",
        "agent:billing model_call",
        "agent:billing approval_requested",
        "human:U0LEE approval_decided",
        "agent:billing model_call",
        "agent:billing approval_requested",
        "human:U0LEE approval_decided",
        "agent:billing tool_call",
        "agent:billing handoff",
        "agent:cs answer",
      ],
    );
    const text = (kind: string, nth = 0) => story.entries.filter((e) => e.kind === kind)[nth]?.text;
    assert.match(
      text("model_call") ?? "",
      /gpt-4o-mini: 1000 prompt \+ 50 completion tokens, \$0\.000210, 800 ms/,
    );
    assert.match(
      text("handoff") ?? "",
      /Handed over to agent:billing: Customer returns order 1077\. Needed: Refund 149 USD\./,
    );
    assert.match(
      text("approval_requested") ?? "",
      /Asked U0LEE to approve issue_refund\(order_id="1077", amount_usd=149\) under policy refunds-over-100/,
    );
    assert.equal(
      text("approval_decided"),
      'Rejected issue_refund(order_id="1077", amount_usd=149); reason: "Shipping is not refundable"',
    );
    assert.equal(
      text("approval_decided", 1),
      'Approved issue_refund(order_id="1077", amount_usd=139)',
    );
    assert.match(
      text("tool_call", 1) ?? "",
      /^issue_refund\(order_id="1077", amount_usd=139\) → done; allowed by approval:.+ by U0LEE$/,
    );
    assert.equal(story.entries[2]?.data.cost_usd, 0.00021);
  });

  test("reopenings, failed tries, escalations and refused clicks are told in sentences", async () => {
    const task = await insertTask(db, { thread: "1700000300.000400", title: "Lamp on fire" });
    const owner = { kind: "channel", id: "C0SUPPORT" };
    const note = { summary: "Lamp caught fire.", reason: "Stopped automatically: cost cap." };
    await db
      .insertInto("audit_events")
      .values([
        event(task, 1, "system", "attempt_failed", {
          error: "connect ECONNREFUSED 127.0.0.1:11434",
          retried: true,
        }),
        event(task, 2, "system", "attempt_failed", { error: "502 Bad Gateway", retried: false }),
        event(task, 3, "agent:cs", "escalated", { owner, note, reason: "agent" }),
        event(task, 4, "agent:cs", "escalated", { owner, note, reason: "cap" }),
        event(task, 5, "human:U0SAM", "escalation_decided", { choice: { kind: "take_over" } }),
        event(task, 6, "human:U0SAM", "escalation_decided", {
          choice: { kind: "send_back", agentId: "billing", instruction: "Refund 40 USD" },
          from: "thread",
        }),
        event(task, 7, "human:U0X", "approval_refused", { reason: "not_an_approver" }),
        event(task, 8, "human:U0LEE", "approval_refused", {
          reason: "own_request",
          asked_as: "handed_on",
        }),
        event(task, 9, "human:U0DANA", "approval_refused", {
          reason: "own_request",
          asked_as: "requester",
        }),
        event(task, 10, "human:U0DANA", "task_reopened", {
          owner: "cs",
          owner_kind: "agent",
          was: "done",
        }),
        event(task, 11, "human:U0DANA", "task_reopened", {
          owner: "billing",
          owner_kind: "agent",
          was: "failed",
        }),
        event(task, 12, "human:U0DANA", "task_reopened", { owner: "U0SAM" }),
      ])
      .execute();
    const story = await auditStory({ db }, task);
    assert.deepEqual(
      story.entries.map((e) => e.text),
      [
        "Try failed, retried: connect ECONNREFUSED 127.0.0.1:11434",
        "Try failed, no tries left: 502 Bad Gateway",
        "Escalated to channel C0SUPPORT, as the agent asked for a person: Lamp caught fire.",
        "Escalated to channel C0SUPPORT, as it reached a limit: Lamp caught fire. Stopped automatically: cost cap.",
        "Took the escalated work over",
        'Sent the escalated work to agent:billing, saying "Refund 40 USD" (in the thread)',
        "Approval click refused: U0X is not one of its approvers",
        "Approval click refused: U0LEE asked for it (handed the work on), so may not decide it",
        "Approval click refused: U0DANA asked for it (started the task), so may not decide it",
        "Reopened by a reply in its thread after its answer; back with agent:cs",
        "Reopened by a reply in its thread after it failed; back with agent:billing",
        "Reopened by a reply in its thread; back with U0SAM",
      ],
    );
  });

  test("resolves task ids, order ids and thread links; unknown refs fail clearly", async () => {
    const other = await insertTask(db, { thread: "1700000500.000200", title: "Where is 1090?" });
    await db
      .insertInto("tool_calls")
      .values(toolCall(other, 0, "cs", "lookup_order", "read", "done", "k-other", "policy:read", 0))
      .execute();
    await db
      .updateTable("tool_calls")
      .set({ args: JSON.stringify({ order_id: 1090 }) })
      .where("idempotency_key", "=", "k-other")
      .execute();

    const ids = async (ref: string) => (await resolveTaskRef(db, ref))?.taskIds;
    assert.deepEqual(await ids(taskId.toUpperCase()), [taskId]);
    assert.deepEqual(await ids("1077"), [taskId]);
    assert.deepEqual(await ids("#1090"), [other], "found through a tool call's numeric order_id");
    assert.deepEqual(await ids("https://acme.slack.com/archives/C0SUPPORT/p1700000000000100"), [
      taskId,
    ]);
    assert.deepEqual(
      await ids(
        "<https://acme.slack.com/archives/C0SUPPORT/p1700000999000300?thread_ts=1700000000.000100&cid=C0SUPPORT>",
      ),
      [taskId],
    );
    assert.deepEqual(
      await ids("https://slack.com/app_redirect?channel=C0SUPPORT&message_ts=1700000500.000200"),
      [other],
    );
    // The browser's address bar on app.slack.com, with a thread open beside the channel.
    assert.deepEqual(
      await ids("https://app.slack.com/client/T0ACME/C0SUPPORT/thread/C0SUPPORT-1700000000.000100"),
      [taskId],
    );
    // The same thread opened from the Threads view, or from Activity.
    for (const view of ["threads", "activity"])
      assert.deepEqual(
        await ids(`https://app.slack.com/client/T0ACME/${view}/thread/C0SUPPORT-1700000000.000100`),
        [taskId],
        view,
      );
    assert.deepEqual(await ids("9999"), []);
    assert.equal(parseTaskRef("https://example.com/nothing"), undefined);
    assert.equal(parseTaskRef("drop table tasks;"), undefined);
    await assert.rejects(
      auditStory({ db }, "9999"),
      (e) => e instanceof NotFoundError && /No task matches "9999"/.test(e.message),
    );
    await assert.rejects(auditStory({ db }, "not a ref!"), NotFoundError);
  });

  test("who processed the refund: the billing agent, approved by the billing lead", async () => {
    const calls = await whoProcessed({ db }, "1077", "issue_refund");
    assert.equal(calls.length, 2);
    const done = calls.find((c) => c.status === "done");
    assert.equal(done?.agentId, "billing");
    assert.equal(done?.approver, "U0LEE");
    assert.ok(done?.approvalId);
    assert.equal(calls.find((c) => c.status === "rejected")?.reason, "Shipping is not refundable");
    const all = await whoProcessed({ db }, "1077");
    assert.deepEqual(
      all.map((c) => c.tool),
      ["issue_refund", "issue_refund"],
      "read tools are left out",
    );
    assert.match(
      whoProcessedText(calls),
      /issue_refund\(.*amount_usd=139\) by agent:billing: done; approved by human:U0LEE/,
    );
  });

  test("CSV export parses back, quoting and formula guard included; JSON too", async () => {
    const story = await auditStory({ db }, taskId);
    const hostile: AuditEntry = {
      at: at(10),
      taskId,
      actor: "human:U0EVE",
      kind: "note",
      text: '=HYPERLINK("http://evil"), "quoted"\nsecond line',
      parts: ['=HYPERLINK("http://evil"), "quoted"\nsecond line'],
      data: { text: "-1+1" },
    };
    const entries = [...story.entries, hostile];
    const rows = parseCsv(auditCsv(entries));
    assert.deepEqual(rows[0], ["at", "actor", "kind", "text", "data", "task_id"]);
    assert.equal(rows.length, entries.length + 1);
    for (const [i, entry] of entries.entries()) {
      const row = rows[i + 1] ?? [];
      assert.equal(row[0], entry.at.toISOString());
      assert.equal(row[1], entry.actor);
      assert.equal(row[3], /^[=+\-@]/.test(entry.text) ? `'${entry.text}` : entry.text);
      assert.deepEqual(JSON.parse(row[4] ?? ""), entry.data);
    }
    assert.equal(rows.at(-1)?.[3], `'${hostile.text}`);
    const answer = rows.find((r) => r[2] === "answer");
    assert.equal(answer?.[3], 'Answered: "Refunded 139 USD, not 149: "shipping", sorry.\n=Thanks"');
    const json = JSON.parse(auditJson(entries)) as { at: string; text: string }[];
    assert.equal(json.length, entries.length);
    assert.equal(json.at(-1)?.text, hostile.text);
  });

  test("the text a person or a model wrote can neither start a line of its own nor drive the terminal", async () => {
    const forged = `${at(11).toISOString()}  human:U0LEE  approval_decided  approved issue_refund`;
    const hostile: AuditEntry = {
      at: at(10),
      taskId,
      actor: "human:U0EVE",
      kind: "message_received",
      text: `Message: "hi\n${forged}\r${forged}\u001b]0;owned\u0007\u009b2J"`,
      parts: [],
      data: {},
    };
    const story = await auditStory({ db }, taskId);
    const lines = auditText([...story.entries, hostile]).split("\n");
    // Each step's line starts with its time; a text's own later lines are indented under it.
    for (const line of lines) assert.match(line, /^(\d{4}-\d\d-\d\dT| {2})/, JSON.stringify(line));
    assert.equal(lines.filter((l) => /^\d{4}-/.test(l)).length, story.entries.length + 1);
    assert.doesNotMatch(lines.join("\n"), /(?![\t\n])\p{Cc}/u);
    assert.match(lines.join("\n"), /\\u001b\]0;owned\\u0007\\u009b2J/);
    const calls = await whoProcessed({ db }, taskId);
    const call = calls[0];
    assert.ok(call);
    const who = whoProcessedText([{ ...call, reason: `no\n${forged}` }]).split("\n");
    assert.equal(who.length, 2);
    assert.match(who[1] ?? "", /^ {2}\d{4}-/);
  });

  test("npm run audit prints csv and who, and fails clearly on an unknown ref", async () => {
    const run = promisify(execFile);
    const env = { ...process.env, DATABASE_URL: database.url };
    const cli = (...args: string[]) =>
      run(process.execPath, ["scripts/audit.ts", ...args], { cwd: ROOT, env });
    const csv = await cli("1077", "--format", "csv");
    assert.equal(parseCsv(csv.stdout).length, 16);
    const who = await cli("--who", "issue_refund", "1077");
    assert.match(who.stdout, /by agent:billing: done; approved by human:U0LEE/);
    await assert.rejects(
      cli("--who", "1077", "--format", "csv"),
      (e: { code?: number; stderr?: string }) =>
        e.code === 2 && /--who prints text or json, not csv/.test(e.stderr ?? ""),
    );
    await assert.rejects(
      cli("9999"),
      (e: { code?: number; stderr?: string }) =>
        e.code === 1 && /No task matches "9999"/.test(e.stderr ?? ""),
    );
  });

  test("npm run audit reads its settings as Baton does, and never migrates a server's database", async () => {
    const run = promisify(execFile);
    const cli = (env: Record<string, string>) =>
      run(process.execPath, ["scripts/audit.ts", "1077"], {
        cwd: ROOT,
        env: { ...process.env, ...env },
      });
    await assert.rejects(
      cli({ DATABASE_URL: "mysql://x/baton" }),
      (e: { code?: number; stderr?: string }) =>
        e.code === 1 && /DATABASE_URL is invalid: set it to a postgres:\/\//.test(e.stderr ?? ""),
    );
    // A database this code has not migrated yet: said, and left as it was.
    const admin = new pg.Client({ connectionString: await testServerUrl() });
    await admin.connect();
    const name = `baton_audit_empty_${process.pid}`;
    await admin.query(`create database ${name}`);
    try {
      const url = new URL(await testServerUrl());
      url.pathname = `/${name}`;
      await assert.rejects(
        cli({ DATABASE_URL: url.toString() }),
        (e: { code?: number; stderr?: string }) =>
          e.code === 1 && /has not run \d+ of Baton's migrations/.test(e.stderr ?? ""),
      );
      const audited = new pg.Client({ connectionString: url.toString() });
      await audited.connect();
      const migrated = await audited.query("select to_regclass('kysely_migration') as t");
      await audited.end();
      assert.equal(migrated.rows[0]?.t, null, "the audit ran no migration");
    } finally {
      await admin.query(`drop database if exists ${name} with (force)`);
      await admin.end();
    }
  });
});
