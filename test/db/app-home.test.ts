import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { type AgentsFile, agentsFileSchema } from "../../src/config/agents-schema.ts";
import { agentDirectory } from "../../src/core/agents/directory.ts";
import type { Db } from "../../src/db/database.ts";
import { homeData } from "../../src/db/home.repository.ts";
import { createLogger } from "../../src/log.ts";
import type { RuntimeDeps } from "../../src/runtime/deps.ts";
import { runDigest } from "../../src/runtime/digest.ts";
import { messageLink } from "../../src/slack/chat-surface.ts";
import { digestMessage } from "../../src/slack/views/digest.ts";
import { createSlackHandlers } from "../../src/slack/wire-handlers.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { WORKSPACE_URL } from "../support/emulated-chat.ts";
import { recordingChat } from "../support/recording-chat.ts";

// App Home's data: my tasks, approvals and decisions, work a group or a channel owns, and a task
// several people own (in App Home and the digest). One suite per former test file.

describe("home", async () => {
  const T0 = Date.parse("2025-01-06T09:00:00Z");
  const at = (minutes: number) => new Date(T0 + minutes * 60_000);

  let n = 0;
  async function task(
    db: Db,
    title: string,
    v: { owner: string; requester?: string; status?: string; minute?: number },
  ) {
    const [ownerKind = "agent", ownerId = "cs"] = v.owner.split(":");
    const row = await db
      .insertInto("tasks")
      .values({
        channel_id: "C0SUPPORT",
        thread_ts: `1736000000.${String(++n).padStart(6, "0")}`,
        requester_id: v.requester ?? "U0DANA",
        title,
        request_text: title,
        status: v.status ?? "active",
        owner_kind: ownerKind,
        owner_id: ownerId,
        handback_stack: "[]",
        facts: "{}",
        cost_usd: 0,
        last_activity_at: at(v.minute ?? n),
      })
      .returning("id")
      .executeTakeFirstOrThrow();
    return row.id;
  }

  async function approval(
    db: Db,
    taskId: string,
    tool: string,
    v: {
      users?: string[];
      groups?: string[];
      fallback?: string[];
      escalated?: boolean;
      requester?: string;
      decidedBy?: string;
      minute?: number;
    },
  ) {
    await db
      .insertInto("approvals")
      .values({
        task_id: taskId,
        step_no: 1,
        tool_call_id: `call-${++n}`,
        model_call_id: `m-${n}`,
        agent_id: "billing",
        tool,
        args: JSON.stringify({ order_id: "1077" }),
        policy_id: "p",
        requester_id: v.requester ?? "U0DANA",
        // Escalated, as the deadline sweep leaves it: its fallback people are now its approvers.
        approvers: JSON.stringify(
          v.escalated && v.fallback
            ? { users: v.fallback, groups: [] }
            : { users: v.users ?? [], groups: v.groups ?? [] },
        ),
        fallback:
          v.fallback && !v.escalated ? JSON.stringify({ users: v.fallback, groups: [] }) : null,
        escalated_at: v.escalated ? at(0) : null,
        status: v.decidedBy ? "approved" : "pending",
        decided_by: v.decidedBy ?? null,
        decided_at: v.decidedBy ? at(v.minute ?? n) : null,
        reason: null,
        expires_at: at(1000),
        created_at: at(n),
      })
      .execute();
  }

  describe("App Home data", () => {
    let database: TestDatabase;
    let db: Db;
    before(async () => {
      database = await createTestDatabase();
      db = database.db;
      const mine = await task(db, "Owned by me", { owner: "human:U0ME", minute: 10 });
      await task(db, "Asked by me", {
        owner: "agent:billing",
        requester: "U0ME",
        status: "waiting_human",
        minute: 20,
      });
      await task(db, "Owned by my group", { owner: "human:S0LEADS", minute: 5 });
      await task(db, "Mine but done", { owner: "human:U0ME", status: "done" });
      await task(db, "Someone else's", { owner: "human:U0OTHER", requester: "U0OTHER" });

      await approval(db, mine, "named_me", { users: ["U0ME"] });
      await approval(db, mine, "named_my_group", { groups: ["S0LEADS"] });
      await approval(db, mine, "escalated_to_me", {
        users: ["U0OTHER"],
        fallback: ["U0ME"],
        escalated: true,
      });
      await approval(db, mine, "fallback_not_yet", { users: ["U0OTHER"], fallback: ["U0ME"] });
      await approval(db, mine, "my_own_request", { users: ["U0ME"], requester: "U0ME" });
      for (let i = 1; i <= 12; i++)
        await approval(db, mine, `decided_${i}`, { users: ["U0ME"], decidedBy: "U0ME", minute: i });
      await approval(db, mine, "decided_by_other", { users: ["U0ME"], decidedBy: "U0OTHER" });
    });
    after(() => database.drop());

    test("my open tasks, approvals waiting on me, my ten latest decisions", async () => {
      const home = await homeData(db, "U0ME", ["S0LEADS"]);
      assert.deepEqual(
        home.openTasks.map((t) => t.title),
        ["Asked by me", "Owned by me", "Owned by my group"],
      );
      assert.deepEqual(
        home.waitingApprovals.map((a) => a.tool),
        ["named_me", "named_my_group", "escalated_to_me"],
      );
      assert.equal(home.waitingApprovals[0]?.title, "Owned by me");
      assert.deepEqual(
        home.recentDecisions.map((d) => d.tool),
        [12, 11, 10, 9, 8, 7, 6, 5, 4, 3].map((i) => `decided_${i}`),
      );
      assert.equal(home.recentDecisions[0]?.status, "approved");
    });

    test("without group ids, group items are left out", async () => {
      const home = await homeData(db, "U0ME");
      assert.deepEqual(
        home.openTasks.map((t) => t.title),
        ["Asked by me", "Owned by me"],
      );
      assert.deepEqual(
        home.waitingApprovals.map((a) => a.tool),
        ["named_me", "escalated_to_me"],
      );
    });

    test("someone with nothing gets three empty lists", async () => {
      assert.deepEqual(await homeData(db, "U0NOBODY"), {
        openTasks: [],
        openTaskCount: 0,
        waitingApprovals: [],
        waitingApprovalCount: 0,
        recentDecisions: [],
      });
    });
  });
});

describe("home-groups", async () => {
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
});

describe("people-owners", async () => {
  // A lane naming several people escalates to all of them: the task's owner_id is the list
  // "U0ANN,U0BOB" (escalations.ts). Each of them sees it in their App Home and their digest DM.

  const NOW = new Date("2025-01-06T09:00:00Z");
  const agentsFile: AgentsFile = agentsFileSchema.parse({
    agents: [{ id: "cs", name: "Customer Service", icon: ":wave:", instructions: "Help." }],
    digest: { channel: "C0DIGEST", stale_after: "24h" },
  });

  let database: TestDatabase;
  let taskId: string;
  before(async () => {
    database = await createTestDatabase();
    const row = await database.db
      .insertInto("tasks")
      .values({
        channel_id: "C0DIGEST",
        thread_ts: "1736000000.000001",
        requester_id: "U0DANA",
        title: "Lamp caught fire",
        request_text: "Lamp caught fire",
        status: "waiting_human",
        owner_kind: "human",
        owner_id: "U0ANN,U0BOB",
        handback_stack: "[]",
        facts: "{}",
        cost_usd: 0,
        created_at: new Date(NOW.getTime() - 200 * 3_600_000),
        last_activity_at: new Date(NOW.getTime() - 30 * 3_600_000),
      })
      .returning("id")
      .executeTakeFirstOrThrow();
    taskId = row.id;
  });
  after(() => database.drop());

  test("App Home: a task escalated to several people is among each one's open tasks", async () => {
    const data = await homeData(database.db, "U0ANN", []);
    assert.ok(
      data.openTasks.some((t) => t.id === taskId),
      "U0ANN, one of its owners, sees it",
    );
  });

  test("digest: each of several owners gets the stale task in their own DM", async () => {
    const { chat, sent } = recordingChat(
      () => "https://acme.slack.com/archives/C0DIGEST/p1736000000000001",
    );
    await runDigest(
      {
        db: database.db,
        log: createLogger({ level: "silent" }),
        agentsFile,
        chat,
        threadLink: chat.threadLink,
      },
      NOW,
      "replica-a",
    );
    const channel = sent.find((i) => i.kind === "digest");
    assert.ok(channel && channel.kind === "digest");
    const dms = sent.filter((i) => i.kind === "digest_dm").map((i) => (i as { user: string }).user);
    assert.deepEqual(dms.sort(), ["U0ANN", "U0BOB"], "each owner gets the stale task in a DM");
    const text = JSON.stringify(digestMessage(channel.digest).blocks);
    assert.match(text, /<@U0ANN>, <@U0BOB>/, "the owners are mentioned, each");
  });
});
