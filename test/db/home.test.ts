import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Db } from "../../src/db/database.ts";
import { homeData } from "../../src/db/home.repository.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

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
