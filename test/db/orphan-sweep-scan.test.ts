import assert from "node:assert/strict";
import { test } from "node:test";
import { sql } from "kysely";
import { endedWithUnreadReplyQuery, findOrphanedTasks } from "../../src/db/lease.repository.ts";
import { insertInput } from "../../src/db/turn-reads.repository.ts";
import { databaseForFile, insertOrderTask } from "../support/db.ts";

const t = databaseForFile();

// The maintenance sweep runs every 15 s on every replica. It looks for ended tasks a dead run left
// leased with a reply unread: a handful at most, among every task ever answered, and among the
// replies in threads people hold (which no agent reads). Neither may be read whole to find them.
test("the sweep finds a dead run's ended task with an unread reply without reading every task", async () => {
  await sql`insert into tasks (channel_id, thread_ts, requester_id, title, request_text, status,
      owner_kind, owner_id)
    select 'C0ORDERS', g::text, 'U0DANA', 'where is my order?', 'where is my order?',
      case when g % 10 = 0 then 'waiting_human' else 'done' end,
      case when g % 10 = 0 then 'human' else 'agent' end,
      case when g % 10 = 0 then 'U0LEAD' else 'customer-service' end
    from generate_series(1, 30000) g`.execute(t.db);
  await sql`insert into task_inputs (task_id, author_id, text)
    select id, 'U0DANA', 'any news?' from tasks where owner_kind = 'human'`.execute(t.db);
  // The dead run's: answered, its lease run out, a reply unread.
  const dead = await insertOrderTask(t.db, "dead.1");
  await t.db
    .updateTable("tasks")
    .set({
      status: "done",
      lease_owner: "w/1",
      lease_until: sql<Date>`now() - interval '1 minute'`,
    })
    .where("id", "=", dead.id)
    .execute();
  await t.db
    .transaction()
    .execute((tx) => insertInput(tx, { taskId: dead.id, authorId: "U0DANA", text: "and 1078?" }));
  await sql`analyze tasks`.execute(t.db);
  await sql`analyze task_inputs`.execute(t.db);

  assert.deepEqual(await findOrphanedTasks(t.db, 100), [dead.id]);
  const plan = (await endedWithUnreadReplyQuery(t.db, 100).explain())
    .map((r) => String(r["QUERY PLAN"]))
    .join("\n");
  assert.doesNotMatch(plan, /Seq Scan on (tasks|task_inputs)/, plan);
  assert.match(plan, /tasks_ended_leased_idx/, plan);
});
