import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, afterEach, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { deliverOutbox } from "../../src/runtime/outbox.ts";
import { OUTBOX_EVENT } from "../../src/slack/find-posted.ts";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import {
  CHANNEL,
  type Harness,
  harnessPerTest,
  REQUESTER,
  SIGNING_SECRET,
  startHarness,
} from "../support/harness.ts";
import { type Script, scriptByAgent } from "../support/model-server.ts";
import {
  auditEvents,
  postsInThread,
  taskWithStatus,
  textOf,
  waitForApprovalCard,
  waitForEscalationCard,
} from "../support/observe.ts";
import * as threads from "../support/outbox-threads.ts";
import { pingPongAgents, pingPongScript } from "../support/ping-pong.ts";
import { whereIsMyOrderScript } from "../support/scripts.ts";
import {
  blockTexts,
  cardWithButton,
  directRefundScript,
  escalationScript,
  finishedTask,
  orderReturnScript,
  taskOfThread,
  toolCallsOf,
} from "../support/scripts-humans.ts";
import { SLACK_DEFAULTS, type SlackMessage } from "../support/slack-emulator.ts";
import { blockActionsPayload, deliverEvent } from "../support/slack-signing.ts";
import { runBaton } from "../support/slash-command.ts";

// Slack surfaces and reports: the agents report, App Home's lookups, an order's other tasks, cost
// caps, the hop limit, HTTP tool secrets, decision metrics, find-posted's author check, typed text.
// One suite per former test file.

describe("agents-report", async () => {
  // `/baton agents`: each agent's record from the ledger, through real Bolt, after flow 1 ran.

  let h: Harness;
  before(async () => {
    h = await startHarness({ script: scriptByAgent(whereIsMyOrderScript()) });
  });
  after(async () => {
    await h.close();
  });

  test("/baton agents shows what each agent did, from the ledger", async () => {
    const { ts } = await h.mention("where is my order 1042?");
    await h.until("flow 1 to finish", () => taskWithStatus(h.db.db, ts, "done"));

    const { text, ephemeral } = await runBaton(h, "agents");
    assert.ok(ephemeral, "only the asker sees it");
    const line = (name: string) => {
      const lines = text.split("\n");
      const at = lines.findIndex((l) => l.startsWith(`• *${name}*`));
      assert.notEqual(at, -1, `${name} is listed:\n${text}`);
      return `${lines[at]}\n${lines[at + 1]}`;
    };
    assert.match(text, /^\*Your agents, the last 30 days\*/);
    assert.match(
      line("Customer Service"),
      /autonomous · \d+ model calls · under 0\.01 USD\n {3}no writes/,
    );
    assert.match(
      line("Fulfillment"),
      /autonomous · \d+ model calls · under 0\.01 USD\n {3}writes: 1 ran on its own$/,
    );
    assert.match(
      line("Inventory"),
      /autonomous · \d+ model calls · under 0\.01 USD\n {3}writes: 1 ran on its own$/,
    );
    assert.match(line("Billing"), /autonomous · 0 model calls\n {3}no writes/);

    assert.match(
      (await runBaton(h, "agents 0")).text,
      /^`0` days is out of range: try `\/baton agents 30`/,
    );
    assert.match((await runBaton(h, "help")).text, /\/baton agents \[days\]/);
  });

  test("with supervisors named, only they see the agents' records", async () => {
    const file = h.agentsFile;
    const supervised = await startHarness({
      script: scriptByAgent({}),
      agentsFile: {
        ...file,
        policies: { ...file.policies, supervisors: { users: ["U0BOSS"], groups: [] } },
      },
    });
    try {
      assert.match(
        (await runBaton(supervised, "agents", { user: "U0OPS" })).text,
        /^Only the agents' supervisors \(policies\.supervisors in the agents file\) see their records\.$/,
      );
      assert.match(
        (await runBaton(supervised, "agents", { user: "U0BOSS" })).text,
        /^\*Your agents, the last 30 days\*/,
      );
    } finally {
      await supervised.close();
    }
  });
});

describe("app-home-members", async () => {
  // Work escalated to a lane that names nobody is its channel's, so App Home asks Slack who is in
  // each channel owning open work. Those lists are kept a minute; the first Home after that asks for
  // them again, a few at a time (Slack's Tier 4 limit), and a channel Slack rate-limits is left out
  // of that Home only, not waited for while the person looks at a blank tab.

  let h: Harness;
  before(async () => {
    h = await startHarness({ script: () => ({ content: "unused" }) });
  });
  after(async () => {
    await h.close();
  });

  let n = 0;
  /** An open task escalated to `channel`'s lane, whose members are its owners. */
  async function ownedBy(channel: string, title: string) {
    await h.db.db
      .insertInto("tasks")
      .values({
        channel_id: "C0ORDERS",
        thread_ts: `1736000000.${String(++n).padStart(6, "0")}`,
        requester_id: "U0DANA",
        title,
        request_text: title,
        status: "waiting_human",
        owner_kind: "human",
        owner_id: channel,
        handback_stack: "[]",
        facts: "{}",
        cost_usd: 0,
      })
      .execute();
  }

  /** `user` opens Baton's Home tab; resolves with the view published, once Slack has it. */
  async function openHome(user: string): Promise<string> {
    const before = h.slack.callsTo("views.publish").length;
    const opened = { type: "app_home_opened", user, tab: "home" };
    const delivery = await deliverEvent(h.endpoint, SIGNING_SECRET, opened as never);
    assert.equal(delivery.status, 200);
    const published = h.slack
      .callsTo("views.publish")
      .slice(before)
      .find((c) => c.args.user_id === user);
    assert.ok(published, "the Home was published");
    return JSON.stringify(published.args.view);
  }

  const membersCalls = (channels: readonly string[]) =>
    h.slack
      .callsTo("conversations.members")
      .filter((c) => channels.includes(String(c.args.channel)));

  test("App Home asks Slack for the members of a few channels at a time, each once", async () => {
    const user = "U0MANYLANES";
    const channels = Array.from({ length: 10 }, (_, i) => `C0LANE${i}`);
    for (const channel of channels) {
      h.slack.setChannel({ id: channel, members: [user] });
      await ownedBy(channel, `Escalated to ${channel}`);
    }
    // Slack takes each call, and answers none until the test lets it.
    const held = channels.map(() =>
      h.slack.holdAnswer("conversations.members", (c) => channels.includes(String(c.args.channel))),
    );
    let arrived = 0;
    for (const hold of held) void hold.arrived.then(() => arrived++);
    const home = openHome(user);
    try {
      await h.until("four calls in flight", async () => arrived >= 4);
      // Past the bound nothing more can come, however long this waits; the pause leaves the time to
      // arrive to calls that do not keep to it (one for every channel at once, as Baton used to send).
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(arrived, 4, "4 calls in flight at once, the others waiting for an answer");
    } finally {
      for (const hold of held) hold.release();
    }
    const view = await home;

    for (const channel of channels) assert.match(view, new RegExp(`Escalated to ${channel}`));
    assert.equal(membersCalls(channels).length, channels.length, "each channel asked once");
    await openHome(user);
    assert.equal(membersCalls(channels).length, channels.length, "then kept, not asked again");
  });

  test("a channel Slack rate-limits is left out of that Home only, and asked again the next time", async () => {
    const user = "U0TWOLANES";
    const channels = ["C0RATEA", "C0RATEB"];
    for (const channel of channels) {
      h.slack.setChannel({ id: channel, members: [user] });
      await ownedBy(channel, `Waiting in ${channel}`);
    }
    // Half a minute: a Home that waited it out would come long after the person opened the tab.
    h.slack.failNext("conversations.members", { error: "ratelimited", retryAfter: 30 });

    const first = await openHome(user);
    const limited = membersCalls(channels).find((c) => c.failed)?.args.channel;
    const other = channels.find((c) => c !== limited);
    assert.ok(limited && other, "one of the two channels was rate-limited");
    assert.match(first, new RegExp(`Waiting in ${other}`), "the rest of the Home shows");
    assert.doesNotMatch(first, new RegExp(`Waiting in ${limited}`), "unknown for now");
    assert.match(first, /Your open tasks \(1\)/);

    const second = await openHome(user);
    for (const channel of channels) assert.match(second, new RegExp(`Waiting in ${channel}`));
    assert.deepEqual(
      membersCalls(channels)
        .slice(2)
        .map((c) => [c.args.channel, c.failed]),
      [[limited, undefined]],
      "the rate-limited channel is asked again; the other is kept",
    );
  });
});

describe("audit-order-tasks", async () => {
  // An order can have several tasks (a question, then a return): `/baton audit <order>` and
  // `npm run audit -- <order>` tell the same tasks, and say which task each step is of.

  const ROOT = fileURLToPath(new URL("../../", import.meta.url));

  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  const lookUp = { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1077" } }] };

  async function twoTasksOfOneOrder() {
    h = await startHarness({
      script: scriptByAgent({
        "customer-service": [
          lookUp,
          { content: "Order 1077 ships today." },
          lookUp,
          { content: "Order 1077 shipped yesterday." },
        ],
      }),
    });
    const harness = h;
    const tasks = [];
    for (const text of ["where is order 1077?", "has order 1077 shipped yet?"]) {
      const { ts } = await harness.mention(text);
      tasks.push(await harness.until("the answer", () => finishedTask(harness.db.db, ts)));
    }
    const [older, newer] = tasks;
    assert.ok(older && newer);
    return { harness, older, newer };
  }

  test("/baton audit of an order with two tasks tells the newest and names the other", async () => {
    const { harness, older, newer } = await twoTasksOfOneOrder();
    const answer = await runBaton(harness, "audit 1077", { user: "U0REQUESTER" });
    assert.ok(answer.blocks.includes(newer.id), "the newest task's story");
    assert.ok(
      answer.blocks.includes(older.id),
      "the older task of the order is named, not silently left out",
    );
  });

  test("npm run audit of an order with two tasks says which task each step is of", async () => {
    const { harness, older, newer } = await twoTasksOfOneOrder();
    const run = promisify(execFile);
    const { stdout } = await run(process.execPath, ["scripts/audit.ts", "1077"], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: harness.db.url },
    });
    const lines = stdout.trim().split("\n");
    const asked = (text: string) => lines.find((l) => l.includes(`Message: "${text}"`)) ?? "";
    assert.ok(asked("where is order 1077?").includes(older.id), asked("where is order 1077?"));
    assert.ok(asked("has order 1077 shipped yet?").includes(newer.id));
  });
});

describe("cost-cap", async () => {
  const startHarness = harnessPerTest();

  /** Customer Service alone, with the given caps; it would look two orders up, then answer. */
  function agentsWithCaps(caps: string) {
    return parseAgentsFile(
      `
defaults:
  entry_agent: customer-service
agents:
  - id: customer-service
    name: Customer Service
    icon: ":speech_balloon:"
    tools: [lookup_order]
    instructions: Look the order up, then tell the requester where it is.
    caps: ${caps}
`,
      "cost-cap.yml",
      new Set(demoTools.map((t) => t.name)),
    );
  }

  const lookupThenAnswer = () => [
    { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1042" } }] },
    { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1077" } }] },
    { content: "Your order 1042 is stuck in fulfillment; we are on it." },
  ];

  async function start(caps: string, replies: number): Promise<Harness> {
    const script = Array.from({ length: replies }, lookupThenAnswer).flat();
    return startHarness({
      script: scriptByAgent({ "customer-service": script }),
      agentsFile: agentsWithCaps(caps),
    });
  }

  async function escalationOf(h: Harness, taskId: string) {
    return h.db.db
      .selectFrom("escalations")
      .selectAll()
      .where("task_id", "=", taskId)
      .executeTakeFirst();
  }

  test("a task over its agent's token cap stops and goes to a person, with a note that says so", async () => {
    const h = await start("{ tokens_per_task: 50 }", 1);
    const { ts } = await h.mention("where is order 1042?");
    const task = await h.until("the task to go to a person", () =>
      taskWithStatus(h.db.db, ts, "waiting_human"),
    );

    // The model server bills chars/4: the first call stays under 50 tokens, the second goes over.
    assert.ok(task.tokens >= 50);
    assert.equal(h.model.requests.length, 2, "no model call once the task is over its cap");
    assert.equal(task.owner_kind, "human");
    assert.equal(task.owner_id, CHANNEL, "no lane configured: the task's channel owns it");

    const escalation = await escalationOf(h, task.id);
    assert.ok(escalation);
    assert.equal(escalation.status, "open");
    const note = escalation.note as { reason?: string; lane?: string };
    assert.equal(note.lane, "owner_escalation");
    assert.match(note.reason ?? "", /Stopped automatically/);
    assert.match(note.reason ?? "", new RegExp(`used ${task.tokens} model tokens`));
    assert.match(note.reason ?? "", /Customer Service's cap of 50 per task/);
    const [stopped, ...more] = await auditEvents(h.db.db, task.id, "task_stopped");
    assert.equal(more.length, 0);
    assert.ok(stopped);
    assert.match(String((stopped.data as { reason?: string }).reason), /cap of 50 per task/);

    const card = await h.until("the escalation card in the thread", async () =>
      cardWithButton(h.slack, ts, ESCALATION_TAKE_OVER),
    );
    assert.match(blockTexts(card).join("\n"), /cap of 50 per task/);
    // Baton wrote this note: its requester is a mention, not "<@U0REQUESTER>" spelled out.
    const texts = JSON.stringify(card.args.blocks);
    assert.ok(texts.includes(`*Requester*\\n<@${REQUESTER}>`), texts);
    assert.ok(!texts.includes("&lt;@"), "no escaped mention on the card");
    // `/baton status` says it in words, and names the owning channel as a channel.
    const status = await runBaton(h, `status ${task.id}`);
    assert.match(status.text, new RegExp(`: waiting on a person, owned by <#${CHANNEL}>`));
    const orderAnswered = h.slack
      .callsTo("chat.postMessage")
      .some((c) => c.args.thread_ts === ts && /stuck in fulfillment/.test(String(c.args.text)));
    assert.equal(orderAnswered, false, "the agent never answered past its cap");
  });

  test("the per-day cap counts the agent's spend across tasks: a new task stops before any model call", async () => {
    // One scripted call costs about 0.00001 USD at gpt-4o-mini prices: the first spends the day.
    const h = await start("{ usd_per_day: 0.000001 }", 2);
    const first = await h.mention("where is order 1042?");
    const firstTask = await h.until("the first task to go to a person", () =>
      taskWithStatus(h.db.db, first.ts, "waiting_human"),
    );
    assert.ok(Number(firstTask.cost_usd) >= 0.000001);
    assert.equal(h.model.requests.length, 1);

    const second = await h.mention("and where is order 1077?");
    const secondTask = await h.until("the second task to go to a person", () =>
      taskWithStatus(h.db.db, second.ts, "waiting_human"),
    );
    assert.equal(secondTask.tokens, 0);
    assert.equal(h.model.requests.length, 1, "the second task made no model call");

    for (const task of [firstTask, secondTask]) {
      const note = (await escalationOf(h, task.id))?.note as { reason?: string } | undefined;
      assert.match(note?.reason ?? "", /today \(UTC\), over its cap of 0\.000001 USD per day/);
    }
  });
});

describe("hop-limit", async () => {
  const HOP_LIMIT = 4;
  const agentsFile = pingPongAgents(HOP_LIMIT);
  /** Ping-pong, until the requester says what to do. */
  const script: Script = (request, ctx) =>
    request.messages.some((m) => textOf(m).includes("just tell me"))
      ? { content: "Order 1042 left the warehouse today." }
      : pingPongScript(request, ctx);

  let h: Harness;
  before(async () => {
    h = await startHarness({ script, agentsFile });
  });
  after(async () => {
    await h.close();
  });

  test("agents that keep handing work to each other stop past the hop limit, and the thread is told", async () => {
    const { ts } = await h.mention("where is order 1042?");
    const task = await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"));

    const handoffs = await h.db.db
      .selectFrom("handoffs")
      .select(["kind", "from_id", "to_id"])
      .where("task_id", "=", task.id)
      .orderBy("id")
      .execute();
    const transfers = handoffs.filter((x) => x.kind === "transfer");
    // The limit's handoffs, and the one past it that stops the task.
    assert.equal(transfers.length, HOP_LIMIT + 1);
    assert.deepEqual(
      transfers.map((x) => `${x.from_id}->${x.to_id}`),
      ["ping->pong", "pong->ping", "ping->pong", "pong->ping", "ping->pong"],
    );
    assert.equal(task.hop_count, HOP_LIMIT + 1);
    assert.match(task.failure_reason ?? "", /5 times .*limit is 4/);
    assert.equal(h.model.requests.length, HOP_LIMIT + 1, "no model call past the limit");
    assert.equal((await auditEvents(h.db.db, task.id, "task_failed")).length, 1);

    // Five handoff cards, then one notice that names the limit.
    const notice = await h.until("the failure notice", async () => {
      const posts = postsInThread(h.slack, ts);
      return posts.length === HOP_LIMIT + 2 ? posts.at(-1) : undefined;
    });
    assert.match(String(notice.args.text), /task failed/i);
    assert.match(String(notice.args.text), /the limit is 4/);
    // What to do next, and the history by the thread's link: never the task's id.
    const words = JSON.stringify(notice.args.blocks);
    assert.match(words, /Reply in this thread to have Baton try again/);
    assert.ok(words.includes(`/baton audit https://`), words);
    assert.ok(!words.includes(task.id), "the task's id is not shown");
  });

  test("a reply to a task stopped at the hop limit gives the agents a fresh count", async () => {
    const { ts } = await h.mention("where is order 1043?");
    const failed = await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"));
    const before = h.model.requests.length;

    await h.reply(ts, "just tell me where it is");
    const done = await h.until("the answer", () => taskWithStatus(h.db.db, ts, "done"));
    assert.equal(done.id, failed.id, "the reply reopened the same task");
    assert.equal(done.hop_count, 0, "the count starts again from the requester's reply");
    assert.equal(h.model.requests.length, before + 1, "the agent read the reply and answered");
    const answer = await h.until("the answer in Slack", async () =>
      postsInThread(h.slack, ts).find((p) => String(p.args.text).includes("left the warehouse")),
    );
    assert.equal(answer.args.username, "Pong");
    // The task's story still counts every handoff.
    const status = await runBaton(h, `status ${done.id}`, { user: "U0REQUESTER" });
    assert.match(status.text, /· 5 handoffs ·/);
  });
});

describe("http-tool-secrets", async () => {
  // An operator's CRM that, like many real APIs, echoes the request: its headers in a 2xx debug
  // echo or a 400's error, its path in a redirect's Location. What Baton filled in from `${NAME}`
  // must come back out nowhere: not to the model, the ledger or Slack.
  const TOKEN = "crm-secret-ECHOED-42";
  const HOOK = "hook-path-secret-99";
  const crm = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      if (req.url?.startsWith("/hook/")) {
        // http -> https, as a load balancer answers: Location repeats the path, secret and all.
        res.writeHead(301, { location: `https://crm.example${req.url}` });
        res.end();
        return;
      }
      const bad = req.url === "/bad";
      res.writeHead(bad ? 400 : 200, { "content-type": "application/json" });
      res.end(
        JSON.stringify(
          bad
            ? { error: `bad request; we got authorization=${req.headers.authorization}` }
            : { ok: true, echo: { authorization: req.headers.authorization } },
        ),
      );
    });
  });

  const FILE = (url: string) => `
defaults:
  entry_agent: support
agents:
  - id: support
    name: Support
    icon: ":wave:"
    instructions: Look up.
    tools: [crm_echo, crm_bad]
  - id: hooker
    name: Hooker
    icon: ":hook:"
    instructions: Post to the hook.
    tools: [crm_hook]
tools:
  - name: crm_echo
    description: Echo.
    class: read
    url: ${url}/echo
    headers:
      Authorization: "Bearer \${CRM_TOKEN}"
    parameters: { type: object }
  - name: crm_hook
    description: A webhook whose secret is its path, as Slack's and many others' are.
    class: read
    url: ${url}/hook/\${HOOK_SECRET}
    parameters: { type: object }
  - name: crm_bad
    description: Bad.
    class: read
    url: ${url}/bad
    headers:
      Authorization: "Bearer \${CRM_TOKEN}"
    parameters: { type: object }
`;

  const script: Script = (request, ctx) => {
    if (ctx.agentId === "hooker") return { toolCalls: [{ name: "crm_hook", arguments: {} }] };
    const results = request.messages.filter((m) => m.role === "tool");
    if (results.length === 0) return { toolCalls: [{ name: "crm_echo", arguments: {} }] };
    if (results.length === 1) return { toolCalls: [{ name: "crm_bad", arguments: {} }] };
    // A model that repeats what its tools told it.
    return { content: `Tool said: ${results.map((m) => String(m.content)).join(" | ")}` };
  };

  let h: Harness;
  before(async () => {
    await new Promise<void>((resolve) => crm.listen(0, "127.0.0.1", resolve));
    process.env.CRM_TOKEN = TOKEN;
    process.env.HOOK_SECRET = HOOK;
    const url = `http://127.0.0.1:${(crm.address() as AddressInfo).port}`;
    const names = new Set(demoTools.map((t) => t.name));
    h = await startHarness({ script, agentsFile: parseAgentsFile(FILE(url), "crm.yml", names) });
  });
  after(async () => {
    await h.close();
    crm.close();
    delete process.env.CRM_TOKEN;
    delete process.env.HOOK_SECRET;
  });

  async function auditKindsHolding(secret: string): Promise<string[]> {
    const rows = await h.db.db
      .selectFrom("audit_events")
      .select("kind")
      .where((eb) => eb(eb.cast("data", "text"), "like", `%${secret}%`))
      .execute();
    return rows.map((r) => r.kind);
  }

  test("an HTTP tool's credential from the environment, echoed by its server, is masked in its answer and its refusal", async () => {
    const { ts } = await h.mention("look it up");
    const task = await h.until("the task to finish", () => finishedTask(h.db.db, ts), 20_000);

    const [echo] = await toolCallsOf(h.db.db, task.id, "crm_echo");
    assert.deepEqual(
      [echo?.status, echo?.result],
      ["done", { ok: true, echo: { authorization: "Bearer [redacted]" } }],
    );
    const [bad] = await toolCallsOf(h.db.db, task.id, "crm_bad");
    assert.equal(bad?.status, "failed");

    const lastRequest = h.model.requestsFor("support").at(-1)?.body.messages ?? [];
    const toolResults = lastRequest.filter((m) => m.role === "tool").map((m) => String(m.content));
    assert.equal(toolResults.length, 2);
    assert.match(toolResults[1] ?? "", /bad request; we got authorization=Bearer \[redacted\]/);
    const answer = String(h.slack.messagesIn(CHANNEL, ts).at(-1)?.text);
    assert.match(answer, /Tool said: .*\[redacted\]/);

    const everything = JSON.stringify([
      h.model.requestsFor("support").map((r) => r.body.messages),
      await toolCallsOf(h.db.db, task.id, "crm_echo"),
      await toolCallsOf(h.db.db, task.id, "crm_bad"),
      h.slack.messagesIn(CHANNEL, ts),
    ]);
    assert.ok(!everything.includes(TOKEN), "the token reached the model, tool_calls or Slack");
    assert.deepEqual(await auditKindsHolding(TOKEN), []);
  });

  test("a webhook URL's path secret from the environment, repeated in a redirect's Location, is masked in the task's reason", async () => {
    const { ts } = await h.mention("hooker: ping the hook");
    const failed = await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"));
    assert.match(
      String(failed.failure_reason),
      /crm_hook .* redirects \(HTTP 301 to https:\/\/crm\.example\/hook\/\[redacted\]\): set the URL/,
    );
    const notice = await h.until("the failure notice", async () =>
      postsInThread(h.slack, ts).find((p) => /failed/.test(JSON.stringify(p.args))),
    );
    assert.match(JSON.stringify(notice.args), /redirects/);
    assert.ok(!JSON.stringify(notice.args).includes(HOOK), "the secret reached the thread");
    assert.ok(!String(failed.failure_reason).includes(HOOK));
    assert.deepEqual(await auditKindsHolding(HOOK), []);
  });
});

describe("metrics-decisions", async () => {
  // Counters /metrics missed: a write run after a person approved it (and a rejected, expired or
  // withdrawn one), and a task a person closed with /baton done.

  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  async function counter(port: number | undefined, name: string, labels: Record<string, string>) {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    let sum = 0;
    for (const line of text.split("\n")) {
      if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
      if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
        sum += Number(line.split(" ").at(-1));
    }
    return { sum, text };
  }

  test("an approved write that ran is counted in baton_tool_calls_total", async () => {
    const harness = await startHarness({ script: scriptByAgent(orderReturnScript()) });
    h = harness;
    const { ts } = await harness.mention("I'd like to return order 1077, please refund me");
    const approval = await waitForApprovalCard(harness, "approval");
    await harness.clickCard("U0LEE", APPROVAL_APPROVE, approval, ts);
    await harness.until("finish", () => finishedTask(harness.db.db, ts));
    const row = await harness.db.db
      .selectFrom("tool_calls")
      .select(["status"])
      .where("tool", "=", "issue_refund")
      .executeTakeFirstOrThrow();
    assert.equal(row.status, "done", "the ledger says the refund ran");
    const { sum, text } = await counter(harness.baton.port, "baton_tool_calls_total", {
      tool: "issue_refund",
    });
    const lines = text.split("\n").filter((l) => l.startsWith("baton_tool_calls_total"));
    assert.equal(sum, 1, `issue_refund in baton_tool_calls_total:\n${lines.join("\n")}`);
  });

  test("a task a person closes with /baton done is counted in baton_tasks_finished_total", async () => {
    const harness = await startHarness({ script: scriptByAgent(escalationScript()) });
    h = harness;
    const { ts } = await harness.mention(
      "the lamp from order 1077 caught fire, I want compensation",
    );
    const escalation = await waitForEscalationCard(harness, "card");
    const task = await taskOfThread(harness.db.db, ts);
    assert.ok(task);
    await harness.clickCard("U0SUPPORTLEAD", ESCALATION_TAKE_OVER, escalation, ts);
    await harness.until("owned", async () =>
      (await taskOfThread(harness.db.db, ts))?.owner_id === "U0SUPPORTLEAD" ? true : undefined,
    );
    const answer = await runBaton(h, `done ${task.id}`, {
      user: "U0SUPPORTLEAD",
      channel: "C0SUPPORT",
    });
    assert.match(answer.text, /^Done:/);
    assert.equal((await taskOfThread(harness.db.db, ts))?.status, "done");
    const { sum, text } = await counter(harness.baton.port, "baton_tasks_finished_total", {});
    const lines = text.split("\n").filter((l) => l.startsWith("baton_tasks_"));
    assert.equal(sum, 1, `tasks finished after /baton done:\n${lines.join("\n")}`);
  });
});

describe("find-posted-author", async () => {
  // A row whose delivery may have reached Slack is looked for in its thread before it is sent again.
  // Only a message Baton posted itself counts: anyone can post a message with Baton's metadata (the
  // outbox ids are a sequence), and one that counted would make Baton skip the real post.

  let h: Harness;
  before(async () => {
    h = await startHarness({ script: () => ({ content: "unused" }) });
  });
  after(async () => {
    await h.close();
  });

  /** The thread's one queued row, and Slack's metadata for it, as Baton attaches it. */
  async function queued(thread: threads.Thread) {
    const row = await h.db.db
      .selectFrom("slack_outbox")
      .select("id")
      .where("task_id", "=", thread.taskId)
      .executeTakeFirstOrThrow();
    const metadata = { event_type: OUTBOX_EVENT, event_payload: { outbox_id: String(row.id) } };
    return { id: row.id, metadata };
  }

  /** A sweep of stranded rows: each is looked for in Slack before it is sent. */
  const sweep = () => deliverOutbox(h.baton.deps, { olderThanMs: 0 });

  const bySelf = (m: SlackMessage) => m.bot_id === SLACK_DEFAULTS.botId;

  const outboxRow = (id: string) =>
    h.db.db
      .selectFrom("slack_outbox")
      .select(["status", "slack_ts"])
      .where("id", "=", id)
      .executeTakeFirstOrThrow();

  test("a look-alike of Baton's message posted by a person or another app does not stop the real post", async () => {
    const lookAlikes = [
      { user: "U0MALLORY" },
      { user: "U0OTHERBOT", botId: "B0OTHERBOT", appId: "A0OTHERAPP" },
    ];
    for (const author of lookAlikes) {
      const thread = await threads.newThread(h.db.db, h.slack);
      await threads.say(h.db.db, thread, "Order 1042 ships today.");
      const row = await queued(thread);
      const fake = h.slack.addMessage({
        channel: threads.THREADS_CHANNEL,
        threadTs: thread.ts,
        text: "Order 1042 ships today.",
        metadata: row.metadata,
        ...author,
      });

      assert.equal(await sweep(), 1);
      const replies = h.slack.messagesIn(threads.THREADS_CHANNEL, thread.ts).slice(1);
      const own = replies.filter(bySelf);
      assert.equal(own.length, 1, `Baton posted its message beside ${author.user}'s look-alike`);
      assert.deepEqual(await outboxRow(row.id), { status: "sent", slack_ts: own[0]?.ts });
      assert.notEqual(own[0]?.ts, fake.ts);
    }
  });

  test("Baton's own message, posted before its answer was lost, is found and not posted again", async () => {
    const thread = await threads.newThread(h.db.db, h.slack);
    await threads.say(h.db.db, thread, "Order 1077 is on its way.");
    const row = await queued(thread);
    const posted = h.slack.addMessage({
      channel: threads.THREADS_CHANNEL,
      threadTs: thread.ts,
      text: "Order 1077 is on its way.",
      metadata: row.metadata,
      user: SLACK_DEFAULTS.botUserId,
      botId: SLACK_DEFAULTS.botId,
      appId: SLACK_DEFAULTS.appId,
    });

    assert.equal(await sweep(), 1);
    assert.equal(h.slack.messagesIn(threads.THREADS_CHANNEL, thread.ts).slice(1).length, 1);
    assert.deepEqual(await outboxRow(row.id), { status: "sent", slack_ts: posted.ts });
  });
});

describe("typed-text", async () => {
  let h: Harness;
  let threadTs: string;
  let taskId: string;
  before(async () => {
    h = await startHarness({ script: scriptByAgent(directRefundScript()) });
    // Slack sends message text with &, < and > escaped: the person typed "Tom & Jerry <3".
    const { ts } = await h.mention("billing: please refund order 1077, Tom &amp; Jerry &lt;3");
    threadTs = ts;
    const approval = await waitForApprovalCard(h);
    await h.click(
      blockActionsPayload({
        userId: "U0LEE",
        actionId: APPROVAL_APPROVE,
        value: approval.id,
        channel: CHANNEL,
        messageTs: approval.card_ts ?? "",
        threadTs: ts,
      }),
    );
    await h.until("the task to finish", () => finishedTask(h.db.db, ts));
    const task = await taskOfThread(h.db.db, ts);
    assert.ok(task);
    taskId = task.id;
  });
  after(async () => {
    await h.close();
  });

  const baton = (text: string) => runBaton(h, text);

  test("text Slack sent escaped is shown as the person typed it, not double-escaped", async () => {
    const answer = await baton(`status ${taskId}`);
    // Slack shows "&amp;" as "&": the title must reach Slack escaped once.
    assert.doesNotMatch(answer.text, /&amp;amp;|&amp;lt;/, answer.text);
    assert.match(answer.text, /Tom &amp; Jerry &lt;3/);
    void threadTs;
  });

  test("/baton audit names the person who decided as a mention, not as escaped token text", async () => {
    const answer = await baton(`audit ${taskId}`);
    assert.doesNotMatch(
      answer.blocks,
      /&lt;@U0LEE&gt;/,
      "the approver is shown as literal <@U0LEE>",
    );
    assert.match(answer.blocks, /<@U0LEE>/);
  });
});
