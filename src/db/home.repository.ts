import { type ExpressionBuilder, sql } from "kysely";
import type { Executor } from "./database.ts";
import { OPEN } from "./reports.repository.ts";
import type { Database } from "./schema.ts";

/** What App Home shows a person: the open tasks, the approvals waiting on them, recent decisions. */

const HOME_ROWS_MAX = 50;
const DECISIONS_MAX = 10;

const contains = (column: string, value: object) =>
  sql<boolean>`${sql.ref(column)} @> ${JSON.stringify(value)}::jsonb`;

/**
 * Approvals that wait on the user: named, or in one of their groups (an escalation makes the
 * fallback people the approvers).
 */
function waitsOn(userId: string, groupIds: readonly string[]) {
  return (eb: ExpressionBuilder<Database & { a: Database["approvals"] }, "a">) =>
    eb.or([
      contains("a.approvers", { users: [userId] }),
      ...groupIds.map((g) => contains("a.approvers", { groups: [g] })),
    ]);
}

/**
 * The channels that own open work: a lane that names nobody gives it to its channel's members.
 * App Home asks Slack once per channel for them, not once per task.
 */
export async function channelsOwningOpenWork(db: Executor): Promise<string[]> {
  const rows = await db
    .selectFrom("tasks")
    .select("owner_id")
    .distinct()
    .where("status", "in", OPEN)
    .where("owner_kind", "=", "human")
    // Public and private channels; a direct message's only member is its requester, matched below.
    .where("owner_id", "~", "^[CG][A-Z0-9]+$")
    .execute();
  return rows.map((r) => r.owner_id);
}

/**
 * `groupIds`: the user's groups among those that may own work or approve; `channelIds`: the
 * channels among channelsOwningOpenWork they are a member of.
 */
export async function homeData(
  db: Executor,
  userId: string,
  groupIds: readonly string[] = [],
  channelIds: readonly string[] = [],
) {
  const owners = [userId, ...groupIds, ...channelIds];
  const [openTasks, waitingApprovals, recentDecisions] = await Promise.all([
    db
      .selectFrom("tasks")
      .select(["id", "title", "status", "owner_kind", "owner_id", "channel_id", "thread_ts"])
      .select(["requester_id", "last_activity_at"])
      // The whole count, not the rows kept: "(50)" must not stand for 120.
      .select(sql<number>`count(*) over ()`.as("total"))
      .where("status", "in", OPEN)
      .where((eb) =>
        eb.or([
          eb.and([eb("owner_kind", "=", "human"), eb("owner_id", "in", owners)]),
          // Several owners (a lane naming several people) are one id list: "U0ANN,U0BOB".
          eb.and([
            eb("owner_kind", "=", "human"),
            eb("owner_id", "like", "%,%"),
            sql<boolean>`string_to_array(owner_id, ',') && ${sql.val(owners)}::text[]`,
          ]),
          eb("requester_id", "=", userId),
        ]),
      )
      .orderBy("last_activity_at", "desc")
      .limit(HOME_ROWS_MAX)
      .execute(),
    db
      .selectFrom("approvals as a")
      .innerJoin("tasks as t", "t.id", "a.task_id")
      .select(["a.id", "a.task_id", "a.tool", "a.agent_id", "a.args", "a.created_at"])
      .select(["a.card_channel", "a.card_ts", "t.title", "t.channel_id", "t.thread_ts"])
      .select(sql<number>`count(*) over ()`.as("total"))
      .where("a.status", "=", "pending")
      // Whoever asked may not approve, so their own requests do not wait on them: the task's, or
      // one they asked for in its thread (the rule of askersOf in approval-askers.repository.ts).
      .where("a.requester_id", "<>", userId)
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom("task_inputs as i")
              .select("i.id")
              .whereRef("i.task_id", "=", "a.task_id")
              .where("i.author_id", "=", userId)
              .whereRef("i.consumed_at_step", "<=", "a.step_no"),
          ),
        ),
      )
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom("handoffs as h")
              .select("h.id")
              .whereRef("h.task_id", "=", "a.task_id")
              .where("h.kind", "=", "human_return")
              .where("h.from_kind", "=", "human")
              .where("h.from_id", "=", userId)
              .whereRef("h.step_no", "<=", "a.step_no"),
          ),
        ),
      )
      .where(waitsOn(userId, groupIds))
      .orderBy("a.created_at")
      .limit(HOME_ROWS_MAX)
      .execute(),
    db
      .selectFrom("approvals")
      .select(["id", "task_id", "tool", "status", "decided_at", "reason"])
      .where("decided_by", "=", userId)
      .orderBy("decided_at", "desc")
      .limit(DECISIONS_MAX)
      .execute(),
  ]);
  return {
    openTasks,
    openTaskCount: openTasks[0]?.total ?? 0,
    waitingApprovals,
    waitingApprovalCount: waitingApprovals[0]?.total ?? 0,
    recentDecisions,
  };
}

export type HomeData = Awaited<ReturnType<typeof homeData>>;
