import type { Db } from "../../src/db/database.ts";
import { enqueueOutbox } from "../../src/db/outbox.repository.ts";
import { insertOrderTask } from "./db.ts";
import type { SlackEmulator } from "./slack-emulator.ts";

/** Threads whose messages the outbox tests queue and deliver. */
export const THREADS_CHANNEL = "C0ORDERS";

export interface Thread {
  taskId: string;
  ts: string;
}

/** A task whose thread is in Slack, as a mention leaves it. */
export async function newThread(db: Db, slack: SlackEmulator): Promise<Thread> {
  const { ts } = slack.addMessage({
    channel: THREADS_CHANNEL,
    user: "U0DANA",
    text: "where is 1042?",
  });
  const task = await insertOrderTask(db, ts);
  return { taskId: task.id, ts };
}

/** Queues an agent's reply in the thread, as a committed turn leaves it. */
export async function say(db: Db, thread: Thread, text: string): Promise<void> {
  await db.transaction().execute((tx) =>
    enqueueOutbox(tx, [
      {
        taskId: thread.taskId,
        intent: {
          kind: "agent_reply",
          channel: THREADS_CHANNEL,
          threadTs: thread.ts,
          persona: { name: "Customer Service", icon: "" },
          text,
        },
      },
    ]),
  );
}

/** The texts in the thread after its first message. */
export function threadTexts(slack: SlackEmulator, ts: string): (string | undefined)[] {
  return slack
    .messagesIn(THREADS_CHANNEL, ts)
    .slice(1)
    .map((m) => m.text);
}
