import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { agentDirectory } from "../../src/core/agents/directory.ts";
import type { RuntimeDeps } from "../../src/runtime/deps.ts";
import { messageLink } from "../../src/slack/chat-surface.ts";
import { createSlackHandlers } from "../../src/slack/wire-handlers.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { WORKSPACE_URL } from "../support/emulated-chat.ts";

// A warehouse lane owned by a user group, and supervisors named as a group: no approval policy
// names either group. A member of each must still find their work in App Home.
const FILE = parseAgentsFile(
  `agents:
  - id: fulfillment
    name: Fulfillment
    icon: ":package:"
    instructions: Ship.
    autonomy: supervised
policies:
  supervisors: { groups: [S0SUPERVISORS] }
  lanes:
    operations: { groups: [S0WAREHOUSE] }
`,
  "agents.yml",
);

let database: TestDatabase;
let n = 0;
async function task(title: string, ownerId: string) {
  const row = await database.db
    .insertInto("tasks")
    .values({
      channel_id: "C0OPS",
      thread_ts: `1736000000.${String(++n).padStart(6, "0")}`,
      requester_id: "U0DANA",
      title,
      request_text: title,
      status: "waiting_human",
      owner_kind: "human",
      owner_id: ownerId,
      handback_stack: "[]",
      facts: "{}",
      cost_usd: 0,
    })
    .returning("id")
    .executeTakeFirstOrThrow();
  return row.id;
}

/** Each channel Slack was asked for the members of, in order. */
const channelsAsked: string[] = [];

/** `unlisted`: groups and channels Slack will not list now (deleted, or Slack failing). */
function homeFor(userId: string, unlisted: string[] = []) {
  const members: Record<string, string[]> = {
    S0WAREHOUSE: ["U0WAREHOUSE"],
    S0SUPERVISORS: ["U0SUPER"],
    C0SUPPORT: ["U0SUPPORTLEAD", "U0WAREHOUSE"],
    C0PRIVATE: ["U0HR"],
  };
  const deps = {
    db: database.db,
    agents: agentDirectory(FILE),
    log: { warn: () => {} },
    chat: {
      groupMembers: async (group: string) => {
        if (unlisted.includes(group)) throw new Error("Slack refused usergroups.users.list");
        return members[group] ?? [];
      },
      channelMembers: async (channel: string) => {
        channelsAsked.push(channel);
        if (unlisted.includes(channel)) throw new Error("Slack refused conversations.members");
        return members[channel] ?? [];
      },
      threadLink: (channel: string, ts: string) => messageLink(WORKSPACE_URL, channel, ts),
    },
  } as unknown as RuntimeDeps;
  return createSlackHandlers(deps, async () => "U0BOT").homeView(userId);
}

before(async () => {
  database = await createTestDatabase();
  await task("Pallet 7 is missing", "S0WAREHOUSE");
  const supervised = await task("Ship order 1042", "fulfillment");
  await database.db
    .insertInto("approvals")
    .values({
      task_id: supervised,
      step_no: 1,
      tool_call_id: "call-1",
      model_call_id: "m-1",
      agent_id: "fulfillment",
      tool: "ship_order",
      args: JSON.stringify({ order_id: "1042" }),
      policy_id: "supervised",
      requester_id: "U0DANA",
      approvers: JSON.stringify({ users: [], groups: ["S0SUPERVISORS"] }),
      fallback: null,
      status: "pending",
      expires_at: new Date(Date.now() + 3_600_000),
    })
    .execute();
});
after(() => database.drop());

test("a task escalated to a lane's group shows in its members' App Home", async () => {
  const view = JSON.stringify(await homeFor("U0WAREHOUSE"));
  assert.match(view, /Your open tasks \(1\)/);
  assert.match(view, /Pallet 7 is missing/);
});

test("an approval waiting on the supervisors' group shows in its members' App Home", async () => {
  const view = JSON.stringify(await homeFor("U0SUPER"));
  assert.match(view, /Waiting for your approval \(1\)/);
  assert.match(view, /ship_order/);
});

test("a group Slack will not list leaves the rest of App Home, not a blank tab", async () => {
  const view = JSON.stringify(await homeFor("U0WAREHOUSE", ["S0SUPERVISORS"]));
  assert.match(view, /Pallet 7 is missing/);
});

test("a task owned by a person names its owner as a mention, not as escaped text", async () => {
  await task("Refund for order 1077", "U0ANN");
  const view = JSON.stringify(await homeFor("U0ANN"));
  assert.match(view, /Refund for order 1077/);
  assert.doesNotMatch(view, /&lt;@U0ANN&gt;/, "the owner shows as the literal text <@U0ANN>");
});

test("the open-task count is the user's, not the query's row limit", async () => {
  for (let i = 0; i < 60; i++) await task(`Busy ${i}`, "U0BUSY");
  const view = JSON.stringify(await homeFor("U0BUSY"));
  assert.match(view, /Your open tasks \(60\)/);
});

// A lane that names nobody is its channel's: the escalation's owner is the channel's id.
test("a task escalated to a lane owned by a channel shows in its members' App Home", async () => {
  await task("Lamp arrived broken", "C0SUPPORT");
  await task("Customer wants a callback", "C0SUPPORT");
  await task("Complaint about a manager", "C0PRIVATE");
  channelsAsked.length = 0;
  const view = JSON.stringify(await homeFor("U0SUPPORTLEAD"));
  assert.match(view, /Your open tasks \(2\)/);
  assert.match(view, /Lamp arrived broken/);
  assert.match(view, /Customer wants a callback/);
  assert.match(view, /<#C0SUPPORT>/, "the owner shows as the channel");
  assert.doesNotMatch(view, /Complaint about a manager/, "not a member of that channel");
  assert.deepEqual(channelsAsked.toSorted(), ["C0PRIVATE", "C0SUPPORT"], "once per channel");

  const outsider = JSON.stringify(await homeFor("U0DANA2"));
  assert.doesNotMatch(outsider, /Lamp arrived broken|Complaint about a manager/);
  const both = JSON.stringify(await homeFor("U0WAREHOUSE"));
  assert.match(both, /Pallet 7 is missing/);
  assert.match(both, /Lamp arrived broken/);
});

test("a channel Slack will not list leaves the rest of App Home", async () => {
  const view = JSON.stringify(await homeFor("U0WAREHOUSE", ["C0SUPPORT"]));
  assert.match(view, /Pallet 7 is missing/);
  assert.doesNotMatch(view, /Lamp arrived broken/);
});
