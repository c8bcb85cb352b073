import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type Harness, startHarness } from "../support/harness.ts";
import { taskWithStatus } from "../support/observe.ts";
import { pingPongAgents, pingPongScript } from "../support/ping-pong.ts";

// A halt found at the start of a turn (hop limit, cost cap, removed agent) first waits for the run's
// posts still under way. Slack can hold one for long (Retry-After): the run renews its lease the
// while, or another run would take the task over, not find the post in Slack yet, and post it again.

const agentsFile = pingPongAgents(1);
const script = pingPongScript;

const LEASE_MS = 1_000;

let h: Harness;
before(async () => {
  h = await startHarness({ script, agentsFile, leaseMs: LEASE_MS });
});
after(async () => {
  await h.close();
});

test("handoff cards posted slowly while the run halts at the hop limit are posted once", async () => {
  // Slack throttles the handoff card: the run waits 3 s (Retry-After) and posts it then.
  h.slack.failNext("chat.postMessage", { error: "ratelimited", retryAfter: 3 });
  const { ts } = await h.mention("where is order 1042?");
  await h.slack.waitForCall("chat.postMessage", (c) => c.failed !== undefined);
  // The run now waits on that post in its halt, without renewing its lease; it runs out.
  await new Promise((r) => setTimeout(r, LEASE_MS + 500));
  // The requester writes in the thread: the reply's job takes the task over.
  await h.reply(ts, "any news?");
  await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"), 20_000);
  await new Promise((r) => setTimeout(r, 4_000));

  const cards = h.slack
    .callsTo("chat.postMessage")
    .filter((c) => !c.failed && c.args.thread_ts === ts && /Pong/.test(JSON.stringify(c.args)))
    .filter((c) => !/failed|stopped|could not/i.test(String(c.args.text)));
  // The limit's one handoff and the one past it: each card once.
  const texts = cards.map((c) => String(c.args.text));
  assert.equal(
    cards.length,
    2,
    `each handoff card is posted once (posted ${cards.length} cards: ${texts.join(" | ")})`,
  );
  assert.equal(new Set(texts).size, 2, texts.join(" | "));
});
