// Baton in child processes against one database, Slack emulator and scripted model, so a test can
// SIGKILL a process at an exact point and start another one, as after a real crash. Not in
// baton-process.ts: that file is what each child runs, and must not load the test servers.
import assert from "node:assert/strict";
import { after } from "node:test";
import { sql } from "kysely";
import { type BatonProcess, spawnBaton } from "./baton-process.ts";
import { createTestDatabase, type TestDatabase } from "./db.ts";
import { CHANNEL, clickCardAt, freePort, REQUESTER, SIGNING_SECRET, until } from "./harness.ts";
import { type ModelServer, type Script, startModelServer } from "./model-server.ts";
import { type SlackEmulator, startSlackEmulator } from "./slack-emulator.ts";
import { appMentionEvent, deliverEvent, messageEvent } from "./slack-signing.ts";

// Short, so a dead worker's lease runs out within the test; still far longer than any turn here.
const LEASE_MS = 1_500;

export interface CrashRig {
  db: TestDatabase;
  slack: SlackEmulator;
  model: ModelServer;
  /** The process to kill: the one `start` returned last. */
  current: BatonProcess | undefined;
  /**
   * `workers`: BATON_WORKERS (default 2); `stopWaitMs`: Baton's stopWaitMs (default its own);
   * `agentsFile`: BATON_AGENTS_FILE (default agents.yml).
   */
  start(options: {
    maintenance: boolean;
    workers?: number;
    stopWaitMs?: number;
    agentsFile?: string;
  }): Promise<BatonProcess>;
  /** Dana mentions Baton in #orders (Slack must take the event); returns the thread's ts. */
  mention(text: string): Promise<string>;
  /** Dana replies in the thread (Slack must take the event). */
  reply(threadTs: string, text: string): Promise<void>;
  /** A person clicks a button on a card (an approval or escalation row) in the task's thread. */
  clickCard(
    userId: string,
    actionId: string,
    card: { id: string; card_ts: string | null },
    threadTs: string,
  ): Promise<{ status: number; body: string }>;
  close(): Promise<void>;
}

/** Polls as a harness does, with time for a child process to start. */
export function untilCrash<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs = 20_000,
): Promise<T> {
  return until(what, check, timeoutMs);
}

/** Registers an `after` that closes every rig the file started; returns what starts one. */
export function crashRigs(): (script: Script) => Promise<CrashRig> {
  const rigs: CrashRig[] = [];
  after(async () => {
    for (const rig of rigs) await rig.close();
  });
  return async (script) => {
    const rig = await startCrashRig(script);
    rigs.push(rig);
    return rig;
  };
}

async function startCrashRig(script: Script): Promise<CrashRig> {
  const db = await createTestDatabase();
  const slack = await startSlackEmulator({
    users: [{ id: REQUESTER, name: "dana" }],
    // Who agents.yml's large-refunds policy asks, as in the harness: flow 2's approvals.
    usergroups: [{ id: "S0BILLINGLEADS", handle: "billing-leads", users: ["U0LEE"] }],
  });
  const model = await startModelServer(script);
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}/slack/events`;
  const processes: BatonProcess[] = [];
  const rig: CrashRig = {
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
        ...(options.workers !== undefined && { workers: options.workers }),
        ...(options.stopWaitMs !== undefined && { stopWaitMs: options.stopWaitMs }),
        ...(options.agentsFile !== undefined && { agentsFile: options.agentsFile }),
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
      assert.equal((await deliverEvent(endpoint, SIGNING_SECRET, event)).status, 200);
      return ts;
    },
    async reply(threadTs, text) {
      const { ts } = slack.addMessage({ channel: CHANNEL, user: REQUESTER, text, threadTs });
      const event = messageEvent({ user: REQUESTER, channel: CHANNEL, text, ts, threadTs });
      assert.equal((await deliverEvent(endpoint, SIGNING_SECRET, event)).status, 200);
    },
    clickCard: (userId, actionId, card, threadTs) =>
      clickCardAt(endpoint, { userId, actionId, card, threadTs }),
    async close() {
      for (const child of processes) await child.stop();
      await Promise.all([slack.close(), model.close()]);
      await db.drop();
    },
  };
  return rig;
}

/** Waits, by the database's clock (the one maintenance judges by), for a dead worker's lease to end. */
export async function leaseRunsOut(db: TestDatabase, taskId: string): Promise<void> {
  await untilCrash("the dead worker's lease to run out", async () => {
    const row = await db.db
      .selectFrom("tasks")
      .select(sql<boolean>`lease_until < now()`.as("expired"))
      .where("id", "=", taskId)
      .executeTakeFirst();
    return row?.expired === true;
  });
}
