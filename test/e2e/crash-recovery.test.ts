import assert from "node:assert/strict";
import { after, test } from "node:test";
import { sql } from "kysely";
import { type BatonProcess, spawnBaton } from "../support/baton-process.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { CHANNEL, freePort, REQUESTER, SIGNING_SECRET } from "../support/harness.ts";
import {
  type AgentScript,
  type ChatRequest,
  type ModelServer,
  scriptByAgent,
  startModelServer,
} from "../support/model-server.ts";
import {
  outboxIdOf,
  taskInThread,
  taskWithStatus,
  textOf,
  toolMessages,
} from "../support/observe.ts";
import { assertFlowOneDoneOnce, whereIsMyOrderScript } from "../support/scripts.ts";
import { type SlackEmulator, startSlackEmulator } from "../support/slack-emulator.ts";
import { appMentionEvent, deliverEvent } from "../support/slack-signing.ts";

// Short, so a dead worker's lease runs out within the test; still far longer than any turn here.
const LEASE_MS = 1_500;

/**
 * Baton in child processes against one database, Slack emulator and scripted model, so a test
 * can SIGKILL a process at an exact point and start another one, as after a real crash.
 */
interface Rig {
  db: TestDatabase;
  slack: SlackEmulator;
  model: ModelServer;
  /** The process to kill: set once `start` returns. */
  current: BatonProcess | undefined;
  start(options: { maintenance: boolean }): Promise<BatonProcess>;
  mention(text: string): Promise<string>;
  close(): Promise<void>;
}

const rigs: Rig[] = [];
after(async () => {
  for (const rig of rigs) await rig.close();
});

async function startRig(script: AgentScript): Promise<Rig> {
  const db = await createTestDatabase();
  const slack = await startSlackEmulator({ users: [{ id: REQUESTER, name: "dana" }] });
  const model = await startModelServer(script);
  const port = await freePort();
  const processes: BatonProcess[] = [];
  const rig: Rig = {
    db,
    slack,
    model,
    current: undefined,
    async start(options) {
      const child = await spawnBaton({
        databaseUrl: db.url,
        slackApiUrl: slack.url,
        openaiBaseUrl: model.baseURL,
        port,
        signingSecret: SIGNING_SECRET,
        leaseMs: LEASE_MS,
        maintenance: options.maintenance,
        ...(process.env.TEST_LOG_LEVEL && { logLevel: process.env.TEST_LOG_LEVEL }),
      });
      processes.push(child);
      rig.current = child;
      return child;
    },
    async mention(text) {
      const full = `<@U0BATONBOT> ${text}`;
      const { ts } = slack.addMessage({ channel: CHANNEL, user: REQUESTER, text: full });
      const event = appMentionEvent({ user: REQUESTER, channel: CHANNEL, text: full, ts });
      const endpoint = `http://127.0.0.1:${port}/slack/events`;
      const delivery = await deliverEvent(endpoint, SIGNING_SECRET, event);
      assert.equal(delivery.status, 200);
      return ts;
    },
    async close() {
      for (const child of processes) await child.stop();
      await Promise.all([slack.close(), model.close()]);
      await db.drop();
    },
  };
  rigs.push(rig);
  return rig;
}

async function until<T>(what: string, check: () => Promise<T | undefined | false>, ms = 20_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits, by the database's clock (the one maintenance judges by), for a dead worker's lease to end. */
async function leaseRunsOut(db: TestDatabase, taskId: string): Promise<void> {
  await until("the dead worker's lease to run out", async () => {
    const row = await db.db
      .selectFrom("tasks")
      .select(sql<boolean>`lease_until < now()`.as("expired"))
      .where("id", "=", taskId)
      .executeTakeFirst();
    return row?.expired === true;
  });
}

test("a worker killed between a tool call and the next step: after restart the tool has run exactly once", async () => {
  // Flow 1, except that Inventory's third call kills the process serving it: the stock was just
  // corrected and committed, and the next step (the hand-back) was never taken.
  const flow = whereIsMyOrderScript();
  const [checkStock, adjustStock, handBack] = flow.inventory ?? [];
  assert.ok(checkStock && adjustStock && handBack);
  const crash: { cutOff?: ChatRequest } = {};
  const script = scriptByAgent({
    ...flow,
    inventory: [
      checkStock,
      adjustStock,
      async (request) => {
        crash.cutOff = request;
        await rig.current?.kill();
        return { status: 500, error: "nobody is listening: the worker was killed" };
      },
      handBack,
    ],
  });
  const rig = await startRig(script);
  const first = await rig.start({ maintenance: false });
  const ts = await rig.mention("where is order 1042?");

  // The crash: the process dies while Inventory's next step is at the model.
  const cutOff = await until("the first process to be killed", async () => crash.cutOff);
  await first.exited;
  const adjusted = toolMessages(cutOff)
    .map((m) => JSON.parse(textOf(m)) as Record<string, unknown>)
    .find((r) => r.to === 14);
  assert.ok(adjusted, "the killed request carried adjust_stock's committed result");
  const orphan = await taskInThread(rig.db.db, ts);
  assert.ok(orphan);
  assert.equal(orphan.status, "active");
  assert.equal(orphan.owner_id, "inventory");
  assert.ok(
    orphan.lease_owner?.startsWith(`${first.workerId}/`),
    "the dead worker still holds the lease",
  );

  // A new process; its maintenance finds the task once the dead worker's lease has run out.
  await leaseRunsOut(rig.db, orphan.id);
  await rig.start({ maintenance: true });
  const task = await until("the task to finish", () => taskWithStatus(rig.db.db, ts, "done"));

  // The replayed script picked up where the crash cut it off: Inventory's next reply was the hand-back.
  const inventory = rig.model.requestsFor("inventory");
  assert.equal(inventory.length, 4);
  assert.deepEqual(inventory[3]?.body.messages, cutOff.messages, "the same step, asked again");
  assert.deepEqual(script.remaining(), { "customer-service": 0, fulfillment: 0, inventory: 0 });
  await assertFlowOneDoneOnce({ db: rig.db.db, slack: rig.slack, until }, task, ts);
});

/**
 * The same request gets the same reply, as from a deterministic model: a process killed while its
 * model call was in flight asks that same step again after the restart, and must not be handed
 * the next scripted reply.
 */
function sameReplyForSameRequest(script: AgentScript): AgentScript {
  const replies = new Map<string, ReturnType<AgentScript>>();
  const replay = ((request, ctx) => {
    const key = JSON.stringify(
      request.messages.map((m) => ({ role: m.role, content: m.content, tools: m.tool_calls })),
    );
    const known = replies.get(key);
    if (known) return known;
    const reply = script(request, ctx);
    replies.set(key, reply);
    return reply;
  }) as AgentScript;
  return Object.assign(replay, { remaining: script.remaining });
}

test("a worker killed after Slack took a card but before it was marked sent: the card is not posted twice", async () => {
  const script = scriptByAgent(whereIsMyOrderScript());
  // The next turn runs while the card is posted, so the kill may cut off its model call.
  const rig = await startRig(sameReplyForSameRequest(script));
  const first = await rig.start({ maintenance: false });
  // The kill happens inside the emulator's request handler, before Slack's answer is written:
  // the message is in Slack, the outbox row is not marked sent.
  const handoffToInventory = rig.slack.waitForCall(
    "chat.postMessage",
    (call) => {
      if (call.args.username !== "Fulfillment") return false;
      void first.kill();
      return true;
    },
    20_000,
  );
  const ts = await rig.mention("where is order 1042?");
  const cardCall = await handoffToInventory;
  await first.exited;

  const stranded = await rig.db.db
    .selectFrom("slack_outbox")
    .select(["id", "status", "attempts"])
    .where("id", "=", String(outboxIdOf(cardCall)))
    .executeTakeFirstOrThrow();
  assert.notEqual(stranded.status, "sent", "the dead process never recorded the delivery");
  const orphan = await taskInThread(rig.db.db, ts);
  assert.ok(orphan);
  assert.equal(orphan.owner_id, "inventory");

  await leaseRunsOut(rig.db, orphan.id);
  await rig.start({ maintenance: true });
  const task = await until("the task to finish", () => taskWithStatus(rig.db.db, ts, "done"));
  assert.deepEqual(script.remaining(), { "customer-service": 0, fulfillment: 0, inventory: 0 });
  await assertFlowOneDoneOnce({ db: rig.db.db, slack: rig.slack, until }, task, ts);
  const recovered = await rig.db.db
    .selectFrom("slack_outbox")
    .select(["status", "slack_ts"])
    .where("id", "=", stranded.id)
    .executeTakeFirstOrThrow();
  assert.equal(recovered.status, "sent");
  assert.ok(recovered.slack_ts, "the row now points at the message already in Slack");
});
