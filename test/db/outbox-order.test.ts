import assert from "node:assert/strict";
import { after, before, beforeEach, test } from "node:test";
import type { ChatSurface } from "../../src/core/ports.ts";
import { createLogger } from "../../src/log.ts";
import { deliverOutbox } from "../../src/runtime/outbox.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { emulatedChat } from "../support/emulated-chat.ts";
import * as threads from "../support/outbox-threads.ts";
import { type SlackEmulator, startSlackEmulator } from "../support/slack-emulator.ts";

// Several deliverers run at once: a click's, the deadline sweep's, the stranded-row sweep of every
// replica. A thread's messages still go out in order: none is sent past an earlier one that
// another deliverer has in hand.

const log = createLogger({ level: "silent" });

let t: TestDatabase;
let slack: SlackEmulator;
let chat: ChatSurface;
before(async () => {
  t = await createTestDatabase();
  slack = await startSlackEmulator();
  chat = emulatedChat(slack, log);
});
beforeEach(() => slack.reset());
after(async () => {
  await slack.close();
  await t.drop();
});

const deliver = (filter: Parameters<typeof deliverOutbox>[1] = {}) =>
  deliverOutbox({ db: t.db, chat, log }, filter);

const postsOf = (text: string) =>
  slack.callsTo("chat.postMessage").filter((c) => c.args.text === text).length;

test("a message written while another deliverer sends its thread's earlier one waits for it, then follows it", async () => {
  const a = await threads.newThread(t.db, slack);
  await threads.say(t.db, a, "first");
  // The sweep's post of "first" fails, and its answer is slow to come back.
  slack.failNext("chat.postMessage", { error: "service_unavailable" });
  const slow = slack.holdAnswer("chat.postMessage", (c) => c.args.text === "first");
  const sweep = deliver();
  await slow.arrived;

  // Meanwhile a click decides something and its delivery runs.
  await threads.say(t.db, a, "second");
  assert.equal(
    await deliver({ taskId: a.taskId }),
    0,
    "the click's delivery leaves the thread to the sweep",
  );
  assert.equal(
    postsOf("second"),
    0,
    "nothing went out past the message still in the sweep's hands",
  );

  slow.release();
  assert.equal(await sweep, 0);
  assert.deepEqual(
    threads.threadTexts(slack, a.ts),
    [],
    "the second message did not overtake the first",
  );

  // The next delivery, whoever runs it, sends both in order.
  assert.equal(await deliver({ taskId: a.taskId }), 2);
  assert.deepEqual(threads.threadTexts(slack, a.ts), ["first", "second"]);
  assert.equal(postsOf("second"), 1);
});

test("a thread another deliverer holds does not hold back other threads", async () => {
  const a = await threads.newThread(t.db, slack);
  const b = await threads.newThread(t.db, slack);
  await threads.say(t.db, a, "a1");
  await threads.say(t.db, b, "b1");
  const slow = slack.holdAnswer("chat.postMessage", (c) => c.args.text === "a1");
  const click = deliver({ taskId: a.taskId });
  await slow.arrived;
  await threads.say(t.db, a, "a2");
  await threads.say(t.db, b, "b2");

  assert.equal(await deliver(), 2, "the sweep sends b's messages and leaves a's to the click");
  assert.deepEqual(threads.threadTexts(slack, b.ts), ["b1", "b2"]);
  assert.equal(postsOf("a2"), 0);

  slow.release();
  assert.equal(await click, 2);
  assert.deepEqual(threads.threadTexts(slack, a.ts), ["a1", "a2"]);
});
