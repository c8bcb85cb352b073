import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { ToolDefinition } from "../../src/core/tools/tool.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { ConfigError } from "../../src/errors.ts";
import {
  CHANNEL,
  type Harness,
  REQUESTER,
  SIGNING_SECRET,
  startHarness,
} from "../support/harness.ts";
import type { Script } from "../support/model-server.ts";
import { postsInThread, requestText, taskWithStatus } from "../support/observe.ts";
import { deliverCommand } from "../support/slack-signing.ts";

// A stopped task's reason is often an error's message, read by people in the thread, the audit
// trail and `/baton status`. Behind an OpenAI-compatible gateway the key has no shape Baton knows,
// and errors repeat what they got: the key, or a whole request.
const KEY = "gw-7c1e94b2a05d";
const tools: ToolDefinition[] = demoTools.map((t) =>
  t.name === "lookup_order"
    ? {
        ...t,
        run: async () => {
          throw new ConfigError(
            `the order system refused key ${KEY} for ${"<!channel> ".repeat(5_000)}`,
          );
        },
      }
    : t,
);
const script: Script = (request) =>
  requestText(request).includes("gateway")
    ? { status: 400, error: `Invalid request for key ${KEY}; Authorization: Bearer ${KEY}` }
    : { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1042" } }] };

let h: Harness;
before(async () => {
  h = await startHarness({ script, tools, apiKey: KEY });
});
after(async () => {
  await h.close();
});

async function auditRowsHolding(text: string) {
  return h.db.db
    .selectFrom("audit_events")
    .select("kind")
    .where((eb) => eb(eb.cast("data", "text"), "like", `%${text}%`))
    .execute();
}

async function failureNotice(ts: string) {
  return h.until("the failure notice", async () =>
    postsInThread(h.slack, ts).find((p) => /failed/.test(JSON.stringify(p.args))),
  );
}

test("a model error that repeats a gateway's API key fails the task without the key in Slack or the ledger", async () => {
  const { ts } = await h.mention("the gateway: where is order 1042?");
  const failed = await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"));
  assert.match(String(failed.failure_reason), /Invalid request for key \[redacted\]/);
  assert.ok(!String(failed.failure_reason).includes(KEY));
  const notice = JSON.stringify((await failureNotice(ts)).args);
  assert.match(notice, /\[redacted\]/);
  assert.ok(!notice.includes(KEY));
  assert.deepEqual(await auditRowsHolding(KEY), []);
});

test("a stopped task's reason is masked and cut to 2,000 characters wherever it is kept", async () => {
  const { ts } = await h.mention("where is order 1042?");
  const failed = await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"));
  const reason = String(failed.failure_reason);
  assert.ok(reason.length <= 2_000, `the reason is ${reason.length} characters`);
  assert.match(reason, /^the order system refused key \[redacted\] for <!channel> .*…$/s);
  const [stored] = await h.db.db
    .selectFrom("audit_events")
    .select("data")
    .where("task_id", "=", failed.id)
    .where("kind", "=", "task_failed")
    .execute();
  assert.deepEqual(stored?.data, { reason });
  assert.ok(!JSON.stringify((await failureNotice(ts)).args).includes(KEY));
  assert.deepEqual(await auditRowsHolding(KEY), []);
});

test("/baton status cuts a long title and reason, and its answer stays within Slack's limits", async () => {
  const { ts } = await h.mention("where is order 1042?");
  const failed = await h.until("the task to fail", () => taskWithStatus(h.db.db, ts, "failed"));
  // As a row written before reasons were cut holds them.
  await h.db.db
    .updateTable("tasks")
    .set({ title: "<!here> ".repeat(1_000), failure_reason: "<!channel> ".repeat(10_000) })
    .where("id", "=", failed.id)
    .execute();
  await deliverCommand(h.endpoint, SIGNING_SECRET, {
    command: "/baton",
    text: `status ${failed.id}`,
    user_id: REQUESTER,
    channel_id: CHANNEL,
    response_url: h.slack.responseUrl,
  });
  const reply = await h.until("the answer", async () => h.slack.callsTo("response_url")[0]);
  const text = String(reply.args.text);
  assert.ok(text.length <= 4_000, `the answer is ${text.length} characters`);
  const [title = "", , because = ""] = text.split("\n");
  assert.match(title, /^\*(&lt;!here&gt; )+.*…\*: failed, owned by /);
  assert.ok(title.length < 300, `the title line is ${title.length} characters`);
  assert.match(because, /^Stopped because (&lt;!channel&gt; )+.*…\.$/);
  assert.match(text, new RegExp(`Task \`${failed.id}\``));
  assert.ok(!/<!(here|channel)>/.test(text), "no broadcast");
});
