import assert from "node:assert/strict";
import { test } from "node:test";
import { sql } from "kysely";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { agentDirectory } from "../../src/core/agents/directory.ts";
import type { ModelPort } from "../../src/core/model.ts";
import { type ChatSurface, systemClock } from "../../src/core/ports.ts";
import { toolRegistry } from "../../src/core/tools/tool.ts";
import { claimLease, LOST_TRY, releaseLease } from "../../src/db/lease.repository.ts";
import { enqueueOutbox } from "../../src/db/outbox.repository.ts";
import { insertInput } from "../../src/db/turn-reads.repository.ts";
import { type TurnRecords, writeTurn } from "../../src/db/turn-records.repository.ts";
import { createLogger } from "../../src/log.ts";
import { createMetrics } from "../../src/metrics.ts";
import { auditStory } from "../../src/runtime/audit-story.ts";
import type { RuntimeDeps } from "../../src/runtime/deps.ts";
import { LeaseLeftError, recordFailedTry } from "../../src/runtime/failed-tries.ts";
import { haltTask } from "../../src/runtime/halt.ts";
import { reopenForAgent } from "../../src/runtime/reopen.ts";
import { runTask } from "../../src/runtime/run-task.ts";
import { databaseForFile, insertAskedOrderTask } from "../support/db.ts";
import { recordingChat } from "../support/recording-chat.ts";

// A run whose worker died leaves its task's lease to run out; the claim that takes the task over
// records that lost try, once, in its own statement: not when the run had finished its work.

const t = databaseForFile();

const newTask = (thread: string) => insertAskedOrderTask(t.db, thread);

/** `run` claimed the task and died: its lease is left, and has run out. */
async function leftByDeadRun(taskId: string, run: string) {
  assert.ok(await claimLease(t.db, taskId, run, 60_000));
  await t.db
    .updateTable("tasks")
    .set({ lease_until: sql<Date>`now() - interval '1 second'` })
    .where("id", "=", taskId)
    .execute();
}

async function failedTries(taskId: string): Promise<Record<string, unknown>[]> {
  const rows = await t.db
    .selectFrom("audit_events")
    .select(["actor_kind", "actor_id", "data"])
    .where("task_id", "=", taskId)
    .where("kind", "=", "attempt_failed")
    .orderBy("id")
    .execute();
  return rows.map((r) => ({
    actor: `${r.actor_kind}:${r.actor_id}`,
    ...(r.data as Record<string, unknown>),
  }));
}

test("a claim that takes over a dead run's lease records its lost try once, and the story tells it", async () => {
  const task = await newTask("200.1");
  await leftByDeadRun(task.id, "dead-process/1");

  const claim = await claimLease(t.db, task.id, "live-process/1", 60_000);
  assert.equal(claim?.turn.task.lease_owner, "live-process/1");
  const lost = { actor: "system:baton", error: LOST_TRY, retried: true, run: "dead-process/1" };
  assert.deepEqual(await failedTries(task.id), [lost]);

  // Claimed again by its holder, refused to another while live, released and claimed: no try lost.
  assert.ok(await claimLease(t.db, task.id, "live-process/1", 60_000));
  assert.equal(await claimLease(t.db, task.id, "other-process/1", 60_000), undefined);
  await releaseLease(t.db, task.id, "live-process/1");
  assert.ok(await claimLease(t.db, task.id, "other-process/1", 60_000));
  assert.deepEqual(await failedTries(task.id), [lost]);

  const { entries } = await auditStory({ db: t.db }, task.id);
  assert.deepEqual(
    entries.filter((e) => e.kind === "attempt_failed").map((e) => `${e.actor} ${e.text}`),
    [`system Try failed, retried: ${LOST_TRY}`],
  );
});

/** `run`, holding the task, commits a turn of its owner's that changes what `changes` says. */
async function turnBy(run: string, taskId: string, changes: TurnRecords["changes"]) {
  const task = await t.db
    .selectFrom("tasks")
    .selectAll()
    .where("id", "=", taskId)
    .executeTakeFirstOrThrow();
  const stepNo = task.step_no + 1;
  const written = await writeTurn(t.db, {
    taskId,
    changes: { stepNo, ...changes },
    modelCall: {
      taskId,
      stepNo,
      agentId: task.owner_id,
      model: "gpt-4o-mini",
      promptTokens: 10,
      completionTokens: 5,
      costUsd: 0,
      latencyMs: 3,
      requestChars: 120,
      outcome: "final",
    },
    conversation: [],
    toolCalls: [],
    handoffs: [],
    audits: [],
    outbox: [],
    delivered: [],
    lease: {
      expectedStep: task.step_no,
      expectedOwner: task.owner_id,
      expectedStint: task.stint_no,
      worker: run,
      ms: 60_000,
    },
  });
  assert.ok(written, "the turn is written");
}

/** The run holding the task died: its lease runs out, and a person's reply or decision wakes it. */
async function diedThenWoken(taskId: string) {
  await t.db
    .updateTable("tasks")
    .set({ status: "active", lease_until: sql<Date>`now() - interval '1 second'` })
    .where("id", "=", taskId)
    .execute();
}

test("a run that answered, or left the task to a person, then died before letting go lost no try, though the task was woken since", async () => {
  const ended: [string, TurnRecords["changes"]][] = [
    ["200.4", { status: "done" }],
    ["200.5", { status: "waiting_human" }],
    ["200.6", { status: "waiting_human", owner: { kind: "human", id: "U0OPS" } }],
  ];
  for (const [thread, changes] of ended) {
    const task = await newTask(thread);
    assert.ok(await claimLease(t.db, task.id, "answered/1", 60_000));
    await turnBy("answered/1", task.id, changes);
    // A reply, a decision, or the person sending the work back, gives it to an agent again.
    await t.db
      .updateTable("tasks")
      .set({ owner_kind: "agent", owner_id: "customer-service" })
      .where("id", "=", task.id)
      .execute();
    await diedThenWoken(task.id);

    assert.ok(await claimLease(t.db, task.id, "live/4", 60_000));
    assert.deepEqual(await failedTries(task.id), [], `${thread}: nothing was lost`);
  }
});

test("a run that died mid-work is a lost try: once it took over a run that had finished, or after a turn that kept the work", async () => {
  const task = await newTask("200.7");
  assert.ok(await claimLease(t.db, task.id, "answered/2", 60_000));
  await turnBy("answered/2", task.id, { status: "done" });
  await diedThenWoken(task.id);
  // The run that takes it over to read the reply dies before its first turn.
  assert.ok(await claimLease(t.db, task.id, "reading/2", 60_000));
  await diedThenWoken(task.id);
  // The next works on it (a handoff keeps the work an agent's), and dies too.
  assert.ok(await claimLease(t.db, task.id, "working/2", 60_000));
  await turnBy("working/2", task.id, {
    owner: { kind: "agent", id: "fulfillment" },
    newStint: true,
    hop: true,
  });
  await diedThenWoken(task.id);

  assert.ok(await claimLease(t.db, task.id, "live/5", 60_000));
  const lost = { actor: "system:baton", error: LOST_TRY, retried: true };
  assert.deepEqual(await failedTries(task.id), [
    { ...lost, run: "reading/2" },
    { ...lost, run: "working/2" },
  ]);
});

test("a run that works on after its last turn finished (a reply opened the task again meanwhile), then died, lost its try", async () => {
  const task = await newTask("200.13");
  // A message an earlier run left undelivered: this run posts through the outbox, in order, and
  // its last answer's post is done before it reads the task again.
  await t.db.transaction().execute((tx) =>
    enqueueOutbox(tx, [
      {
        taskId: task.id,
        intent: { kind: "notice", channel: "C0ORDERS", threadTs: "200.13", text: "On it." },
      },
    ]),
  );
  const reply = (text: string, reopens = false) =>
    t.db.transaction().execute(async (tx) => {
      await insertInput(tx, { taskId: task.id, authorId: "U0DANA", text });
      if (reopens) await reopenForAgent(tx, task.id);
    });
  let calls = 0;
  const model: ModelPort = {
    async complete() {
      if (calls++ === 0) {
        // Dana writes while the agent answers: the answer's statement finds her reply unread.
        await reply("and order 1078?");
        return {
          content: "Order 1042 left the warehouse yesterday.",
          toolCalls: [],
          usage: { promptTokens: 10, completionTokens: 5 },
          model: "gpt-4o-mini",
        };
      }
      // The run works on the replies. Its worker dies at the model: the lease runs out, and
      // another run takes the task over.
      await diedThenWoken(task.id);
      assert.ok(await claimLease(t.db, task.id, "live/8", 60_000));
      throw new Error("the worker died at the model");
    },
  };
  // A halt's runtime, and what a run reads besides.
  const deps = haltDeps("dying");
  const { deliver } = deps.chat;
  Object.assign(deps, {
    model,
    tools: toolRegistry([]),
    clock: systemClock,
    leaseMs: 60_000,
    chat: {
      ...deps.chat,
      // Once the answer is posted (the task done), Dana writes again: her reply opens the task
      // again, as her reply's accept would, while the run still holds it.
      async deliver(intent, outboxId) {
        if (intent.kind === "agent_reply") await reply("are you there?", true);
        return deliver(intent, outboxId);
      },
    } satisfies ChatSurface,
  });

  await assert.rejects(runTask(deps, task.id), /the worker died at the model/);
  assert.equal(calls, 2, "the run worked on after its answer");
  const lost = await failedTries(task.id);
  assert.deepEqual(
    lost.map((e) => [e.error, String(e.run).startsWith("dying/")]),
    [[LOST_TRY, true]],
    "the dying run's try is lost",
  );
});

/** What a halt reads of the runtime, for `worker`: a run's lease name, or a process's. */
function haltDeps(worker: string): RuntimeDeps {
  const file = parseAgentsFile(
    `agents:
  - id: customer-service
    name: Customer Service
    icon: ":wave:"
    instructions: Help.
`,
    "agents.yml",
  );
  const { chat } = recordingChat(
    (channel, ts) => `https://acme.slack.com/archives/${channel}/p${ts}`,
  );
  return {
    db: t.db,
    agents: agentDirectory(file),
    chat,
    log: createLogger({ level: "silent" }),
    metrics: createMetrics(),
    workerId: worker,
  } as unknown as RuntimeDeps;
}

test("a run that halted its task (a cap, a missing agent, an operator's error), then died before letting go, lost no try", async () => {
  const halts = [
    ["200.10", { reason: "over Customer Service's cap of 1 USD per task", toHuman: true }],
    ["200.11", { reason: 'the agent "customer-service" is no longer in the agents file' }],
  ] as const;
  for (const [thread, halt] of halts) {
    const task = await newTask(thread);
    const claim = await claimLease(t.db, task.id, "halted/1", 60_000);
    assert.ok(claim);
    assert.ok(await haltTask(haltDeps("halted/1"), claim.turn.task, { ...halt, holdsLease: true }));
    // A person sends the work back to the agent, or a reply opens the failed task again.
    await t.db
      .updateTable("tasks")
      .set({ owner_kind: "agent", owner_id: "customer-service" })
      .where("id", "=", task.id)
      .execute();
    await diedThenWoken(task.id);

    assert.ok(await claimLease(t.db, task.id, "live/6", 60_000));
    assert.deepEqual(await failedTries(task.id), [], `${thread}: nothing was lost`);
  }
});

test("a dead letter that fails a task a dead run left is no halt of that run's: its try was lost", async () => {
  const task = await newTask("200.12");
  await leftByDeadRun(task.id, "dead-process/3");
  // The job's last retry failed: its dead letter, on another process, fails the task.
  assert.ok(
    await haltTask(haltDeps("other-process"), task, { reason: "model down", unlessDriven: true }),
  );
  await diedThenWoken(task.id);

  assert.ok(await claimLease(t.db, task.id, "live/7", 60_000));
  assert.deepEqual(
    (await failedTries(task.id)).map((e) => e.run),
    ["dead-process/3"],
  );
});

test("claims racing for the same dead run's lease: one takes it, and its lost try is recorded once", async () => {
  const task = await newTask("200.2");
  await leftByDeadRun(task.id, "dead-process/2");
  const claims = await Promise.all(
    ["a", "b", "c", "d"].map((w) => claimLease(t.db, task.id, `racer-${w}/1`, 60_000)),
  );
  assert.equal(claims.filter(Boolean).length, 1);
  assert.deepEqual(
    (await failedTries(task.id)).map((e) => e.run),
    ["dead-process/2"],
  );
});

test("a run whose failure left its lease is recorded by its failure, not again by the claim after it", async () => {
  const task = await newTask("200.3");
  await leftByDeadRun(task.id, "stuck-process/1");
  const log = createLogger({ level: "silent" });
  const error = new LeaseLeftError("stuck-process/1", new Error("Connection terminated"));
  await recordFailedTry({ db: t.db, log }, { taskId: task.id, error, retried: true });

  assert.ok(await claimLease(t.db, task.id, "live-process/3", 60_000));
  assert.deepEqual(await failedTries(task.id), [
    {
      actor: "system:baton",
      error: "Connection terminated",
      retried: true,
      run: "stuck-process/1",
    },
  ]);
});

test("a claim on a task a live run holds answers at once, even while that run writes the task", async () => {
  const task = await newTask("200.9");
  assert.ok(await claimLease(t.db, task.id, "live/1", 60_000));
  // The live run is in a write tool's transaction: it holds the task's row.
  const claim = await t.db.connection().execute(async (c) => {
    await sql`begin`.execute(c);
    await sql`update tasks set step_no = step_no where id = ${task.id}`.execute(c);
    try {
      // A reply's job claims the task meanwhile: refused at once, not held behind the live run.
      return await Promise.race([
        claimLease(t.db, task.id, "other/2", 60_000).then((c) => c ?? "refused"),
        new Promise<"waited">((resolve) => setTimeout(() => resolve("waited"), 5_000).unref()),
      ]);
    } finally {
      await sql`rollback`.execute(c);
    }
  });
  assert.equal(claim, "refused");
  assert.deepEqual(await failedTries(task.id), [], "a live run lost nothing");
});
