import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CHANNEL, type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { whereIsMyOrderScript } from "../support/scripts.ts";
import { finishedTask } from "../support/scripts-humans.ts";
import { assertWithinSlackLimits } from "../support/slack-limits.ts";
import { runBaton } from "../support/slash-command.ts";

let h: Harness;
/** The thread of flow 1's task. */
let threadTs: string;
before(async () => {
  h = await startHarness({ script: scriptByAgent(whereIsMyOrderScript()) });
  const { ts } = await h.mention("where is order 1042?");
  threadTs = ts;
  await h.until("flow 1 to finish", () => finishedTask(h.db.db, ts));
});
after(async () => {
  await h.close();
});

const baton = (text: string) => runBaton(h, text);

test("/baton status <order> tells where the task is and its ownership history", async () => {
  const answer = await baton("status 1042");
  assert.ok(answer.ephemeral);
  assert.match(answer.text, /done, owned by Customer Service/);
  assert.match(answer.text, /transfer: Customer Service → Fulfillment/);
  assert.match(answer.text, /hand back: Inventory → Fulfillment/);
});

test("/baton audit <order> answers with the story in order, within Slack's limits", async () => {
  const answer = await baton("audit 1042");
  assert.ok(answer.ephemeral);
  for (const piece of ["adjust_stock", "Inventory", "ship_order", "handoff"])
    assert.ok(answer.blocks.includes(piece), piece);
  assert.ok(JSON.parse(answer.blocks).length <= 50);
});

test("/baton audit names the agents as people read them, with no internal ids", async () => {
  const answer = await baton("audit 1042");
  // The page's lines; its head names the task id, the reference the other commands take.
  const story = (JSON.parse(answer.blocks) as { type: string; text?: { text: string } }[])
    .flatMap((b) => (b.type === "section" && b.text ? [b.text.text] : []))
    .join("\n");
  assert.match(story, /Task started with Customer Service/);
  assert.match(story, /Handed over to Fulfillment: Order 1042 is stuck/);
  assert.match(story, /Handed back to Customer Service: Order 1042 shipped/);
  assert.match(story, /lookup_order\(order_id="1042"\) → done; a read: no approval needed/);
  assert.match(story, /ship_order\(order_id="1042"\) → done; on its own \(autonomous\)/);
  for (const internal of [/agent:/, /human:/, /policy:/, /[0-9a-f]{8}-[0-9a-f]{4}-/])
    assert.doesNotMatch(story, internal, story);
});

test("/baton who <order> <tool> answers who processed it", async () => {
  const answer = await baton("who 1042 adjust_stock");
  assert.match(answer.text, /inventory|Inventory/);
});

test("/baton who names the agent and the time as a person reads them, with no internal ids", async () => {
  const { text } = await baton("who 1042");
  const [stock, ship, ...more] = text.split("\n");
  assert.equal(more.length, 0, text);
  assert.match(
    stock ?? "",
    /^• <!date\^\d+\^[^|]+\|[^>]+> \*Inventory\* called `adjust_stock` \(sku="LAMP-OAK", /,
  );
  assert.match(stock ?? "", /: done, on its own \(autonomous\)$/);
  assert.match(ship ?? "", /\*Fulfillment\* called `ship_order` \(order_id="1042"\): done/);
  for (const internal of [
    /agent:/,
    /policy:/,
    /\[task /,
    /\d{4}-\d\d-\d\dT/,
    /[0-9a-f]{8}-[0-9a-f]{4}-/,
  ])
    assert.doesNotMatch(text, internal, text);
  assertWithinSlackLimits({ text, blocks: [] });
});

test("/baton with an unknown reference or no verb says what to do", async () => {
  assert.match(
    (await baton("audit 99999")).text,
    /^No task you can read here matches that reference/,
  );
  assert.match((await baton("")).text, /\/baton status/);
});

test("/baton done, status and audit of a task id no task has say so, not to give a task id", async () => {
  const id = "0b7e5c2a-1111-4222-8333-444455556666";
  for (const verb of ["done", "status", "audit", "who"]) {
    const { text } = await baton(`${verb} ${id}`);
    assert.match(text, /^No task you can read here has that id\./, verb);
    assert.doesNotMatch(text, /Give a task id|Try a task id/, verb);
  }
});

test("/baton help and usage answers show their placeholders: no raw <…> for Slack to parse", async () => {
  // Slack reads `<…>` as a link or mention even inside backticks, so "<task, order or thread
  // link>" would show as a broken link. The answers must be safe mrkdwn.
  for (const text of ["", "help", "status", "audit", "done", "who"]) {
    const answer = await baton(text);
    assertWithinSlackLimits({ text: answer.text, blocks: JSON.parse(answer.blocks) });
  }
  assert.match((await baton("help")).text, /`\/baton status &lt;task, order or thread link&gt;`/);
});

test("/baton agents with days it cannot read echoes what was typed and says what works", async () => {
  assert.equal(
    (await baton("agents 9999d")).text,
    "`9999d` isn't a number of days: try `/baton agents 30` (1 to 365).",
  );
  assert.equal(
    (await baton("agents 3.5")).text,
    "`3.5` isn't a whole number of days: try `/baton agents 30` (1 to 365).",
  );
  assert.equal(
    (await baton("agents 400")).text,
    "`400` days is out of range: try `/baton agents 30` (1 to 365).",
  );
  // Typed text is shown as typed, never as a broadcast, a link or a broken code span.
  const hostile = await baton("agents <!channel>");
  assert.match(hostile.text, /^`&lt;!channel&gt;` isn't a number of days/);
  assertWithinSlackLimits({ text: hostile.text, blocks: JSON.parse(hostile.blocks) });
  assert.match((await baton("agents 3`0")).text, /^`3'0` isn't a number of days/);
});

test("/baton status, audit and done alone say a command can't see its thread, and what to paste", async () => {
  for (const verb of ["status", "audit", "done"]) {
    const [usage, hint] = (await baton(verb)).text.split("\n");
    assert.equal(usage, `Usage: \`/baton ${verb} &lt;task, order or thread link&gt;\``);
    assert.equal(
      hint,
      "A slash command can't see which thread you typed it in: paste the thread's link (⋮ › Copy link), a task id or an order id.",
    );
  }
});

test("/baton reads a Slack-formatted link whose label has spaces as one reference", async () => {
  const link = `https://acme.slack.com/archives/${CHANNEL}/p${threadTs.replace(".", "")}`;
  assert.match((await baton(`status <${link}|the order thread>`)).text, /done, owned by/);
  const audit = await baton(`audit <${link}|the order thread>`);
  assert.ok(audit.blocks.includes("adjust_stock"), audit.text);
  assert.match((await baton(`who <${link}|see this> adjust_stock`)).text, /called `adjust_stock`/);
});

test("/baton echoes a long reference of emoji back whole-charactered, never half of one", async () => {
  const ref = `a${"😀".repeat(150)}`;
  const answer = await baton(`status ${ref}`);
  assert.ok(answer.text.isWellFormed(), answer.text);
  assert.match(answer.text, /^"a😀/);
});

test("/baton reads a pasted reference that carries zero-width or direction marks", async () => {
  for (const ref of ["1042\u200B", "\u200F1042", "\uFEFF#1042\u2060"])
    assert.match((await baton(`status ${ref}`)).text, /done, owned by/, JSON.stringify(ref));
});

test('/baton reads "order 1042" as the order, as people say it', async () => {
  assert.match((await baton("status order 1042")).text, /done, owned by/);
  assert.match((await baton("who Order 1042 adjust_stock")).text, /inventory|Inventory/);
});

test("/baton with a mistyped verb says it is not a command, names the near one, then helps", async () => {
  const typo = await baton("stauts 1042");
  assert.match(typo.text, /^`stauts` is not a `\/baton` command; did you mean `status`\?\n/);
  assert.match(typo.text, /`\/baton status &lt;task, order or thread link&gt;`/, "then the help");
  for (const [typed, meant] of [
    ["Audti", "audit"],
    ["agent", "agents"],
    ["hlep", "help"],
  ])
    assert.match((await baton(`${typed} 1042`)).text, new RegExp(`did you mean \`${meant}\``));

  const far = await baton("refund 1042");
  assert.match(far.text, /^`refund` is not a `\/baton` command\.\n/);
  assert.doesNotMatch(far.text, /did you mean/);
  assert.match((await baton("help")).text, /^\*Baton\*/, "asked for, the help comes alone");

  const hostile = await baton(`<!channel>${"x".repeat(300)} 1042`);
  assert.match(hostile.text, /^`&lt;!channel&gt;` is not a/);
  const long = await baton(`${"y".repeat(300)} 1042`);
  assert.ok(long.text.split("\n")[0]?.includes("…"), "cut short");
  assert.ok((long.text.split("\n")[0]?.length ?? 0) < 100, long.text.split("\n")[0]);
  for (const answer of [typo, far, hostile, long])
    assertWithinSlackLimits({ text: answer.text, blocks: JSON.parse(answer.blocks) });
});

test("/baton with a reference alone answers its status, as `/baton status` would", async () => {
  const link = `https://acme.slack.com/archives/${CHANNEL}/p${threadTs.replace(".", "")}`;
  const status = (await baton("status 1042")).text;
  for (const ref of ["1042", "#1042", `<${link}>`]) {
    const answer = await baton(ref);
    assert.ok(answer.ephemeral);
    assert.equal(answer.text, status, ref);
  }
  // A word with no digit is a mistyped verb, and a reference followed by more is not asked alone.
  assert.match((await baton("stauts")).text, /^`stauts` is not a `\/baton` command/);
  assert.match((await baton("1042 issue_refund")).text, /^`1042` is not a `\/baton` command/);
});

test("/baton reads a command that carries a NUL or half an emoji: cleaned as a message's text is", async () => {
  // Postgres refuses a NUL in text: looked up as typed, the command failed on Baton's side.
  assert.match((await baton("who 1042 adjust_stock\u0000")).text, /called `adjust_stock`/);
  assert.match((await baton("status 1042\u0000")).text, /done, owned by/);
  const half = await baton("status \ud83d1042");
  assert.ok(half.text.isWellFormed(), half.text);
});

test("/baton reads a verb pasted with invisible marks, as it reads a reference", async () => {
  for (const text of ["\u200Bstatus 1042", "status\u2060 1042", "\uFEFFStatus order 1042"])
    assert.match((await baton(text)).text, /done, owned by/, JSON.stringify(text));
});

test("/baton answers a huge run of < at once: reading the words takes no quadratic time", async () => {
  // Slack takes messages up to 40,000 characters; each unclosed `<` was scanned to the end.
  const started = Date.now();
  const answer = await baton(`status ${"<".repeat(40_000)}`);
  assert.ok(Date.now() - started < 1_000, `${Date.now() - started} ms`);
  assertWithinSlackLimits({ text: answer.text, blocks: JSON.parse(answer.blocks) });
});

test("/baton status on a task passed on many times says how many earlier changes it leaves out", async () => {
  const task = await h.db.db
    .insertInto("tasks")
    .values({
      channel_id: CHANNEL,
      thread_ts: "1736000000.777777",
      requester_id: "U0DANA",
      title: "Ping-pong",
      request_text: "Ping-pong",
      owner_kind: "agent",
      owner_id: "customer-service",
      handback_stack: "[]",
      facts: JSON.stringify({ order_id: "7777" }),
      cost_usd: 0,
    })
    .returning("id")
    .executeTakeFirstOrThrow();
  const [cs, fulfillment] = [
    { kind: "agent", id: "customer-service" },
    { kind: "agent", id: "fulfillment" },
  ];
  await h.db.db
    .insertInto("handoffs")
    .values(
      Array.from({ length: 25 }, (_, i) => {
        const [from, to] = i % 2 ? [fulfillment, cs] : [cs, fulfillment];
        return {
          task_id: task.id,
          step_no: i + 1,
          kind: i % 2 ? "hand_back" : "transfer",
          from_kind: from.kind,
          from_id: from.id,
          to_kind: to.kind,
          to_id: to.id,
          note: "{}",
        };
      }),
    )
    .execute();
  const answer = (await baton("status 7777")).text;
  assert.equal(answer.match(/^• /gm)?.length, 20);
  assert.ok(
    answer.includes(
      `\n5 earlier changes of owner not shown: \`/baton audit ${task.id}\` tells them all\n• `,
    ),
    answer,
  );
});
