import assert from "node:assert/strict";
import { test } from "node:test";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import { harnessPerTest } from "../support/harness.ts";
import { type ScriptedToolCall, scriptByAgent } from "../support/model-server.ts";
import { postsInThread, taskWithStatus } from "../support/observe.ts";
import { blockTexts, cardWithButton } from "../support/scripts-humans.ts";

const startHarness = harnessPerTest();

// A note Baton refuses: no requester, no recommended action, confidence in words.
const badEscalation = (lane: string): ScriptedToolCall => ({
  name: "escalate_to_human",
  arguments: { summary: "The lamp caught fire.", reason: "Safety", confidence: "low", lane },
});

/** Customer Service asks for a person three times with notes Baton cannot read. */
async function threeRefusedEscalations(lanes: [string, string, string]) {
  const h = await startHarness({
    script: scriptByAgent({
      "customer-service": lanes.map((lane) => ({ toolCalls: [badEscalation(lane)] })),
    }),
  });
  const { ts } = await h.mention("the lamp from order 1077 caught fire, I want compensation");
  const task = await h.until("the task to stop or wait on a person", () =>
    taskWithStatus(h.db.db, ts, "waiting_human", "failed", "done"),
  );
  return { h, ts, task };
}

test("an agent that asks for a person three times with unreadable notes gets one, in its lane", async () => {
  const { h, ts, task } = await threeRefusedEscalations(["support", "nowhere", "operations"]);
  assert.equal(task.status, "waiting_human", task.failure_reason ?? "");
  const escalation = await h.db.db
    .selectFrom("escalations")
    .selectAll()
    .where("task_id", "=", task.id)
    .executeTakeFirstOrThrow();
  // The lane the model named last, when it is one: agents.yml gives operations to U0OPSMANAGER.
  assert.deepEqual(escalation.owner, { kind: "user", id: "U0OPSMANAGER" });
  const note = escalation.note as Record<string, unknown>;
  assert.equal(note.reason, "the agent asked for a person but its note could not be read");
  assert.equal(note.summary, task.title);
  assert.equal(note.lane, "operations");
  assert.equal(note.requester, "<@U0REQUESTER>");

  const card = await h.until("the escalation card", async () =>
    cardWithButton(h.slack, ts, ESCALATION_TAKE_OVER),
  );
  assert.match(blockTexts(card).join("\n"), /its note could not be read/);
  const texts = postsInThread(h.slack, ts).map((p) => String(p.args.text));
  assert.ok(
    !texts.some((t) => /failed/i.test(t)),
    `no failure in the thread: ${texts.join(" | ")}`,
  );
});

test("with no lane it can use, the escalation goes to the owner-escalation lane", async () => {
  const { h, task } = await threeRefusedEscalations(["support", "support", "nowhere"]);
  assert.equal(task.status, "waiting_human", task.failure_reason ?? "");
  const escalation = await h.db.db
    .selectFrom("escalations")
    .selectAll()
    .where("task_id", "=", task.id)
    .executeTakeFirstOrThrow();
  assert.deepEqual(escalation.owner, { kind: "user", id: "U0OWNER" });
  assert.equal((escalation.note as { lane?: unknown }).lane, "owner_escalation");
});
