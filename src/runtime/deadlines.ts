import type { EscalationNote } from "../core/handoffs/note.ts";
import * as humans from "../db/humans.repository.ts";
import { audit, insertHandoff } from "../db/ledger.repository.ts";
import { enqueueOutbox, type OutboxMessage } from "../db/outbox.repository.ts";
import { lockTask, updateTask } from "../db/tasks.repository.ts";
import { approvalIntent, expireApproval } from "./approvals.ts";
import type { RuntimeDeps } from "./deps.ts";
import { cardUpdate, personaOf, post } from "./messages.ts";
import { deliverOutbox } from "./outbox.ts";

type People = { users: string[]; groups: string[] };

const firstOf = (people: People) => people.users[0] ?? people.groups[0] ?? "";
const mentionOf = (id: string) => (id.startsWith("S") ? `<!subteam^${id}>` : `<@${id}>`);

/**
 * Work waiting on a person past its deadline goes to its fallback owner, with a reminder in the
 * thread and a line in the history. Without a fallback, an approval expires (the agent is told).
 * Each move is a conditional update, so replicas running this at once move it once.
 */
export async function enforceDeadlines(deps: RuntimeDeps): Promise<void> {
  const now = deps.clock.now();
  for (const due of await humans.pendingPastDeadline(deps.db, now, 100)) {
    const approval = await humans.findApproval(deps.db, due.id);
    if (!approval) continue;
    if (approval.fallback && !approval.escalated_at)
      await escalateApproval(deps, approval, approval.fallback);
    else await expireApproval(deps, approval);
  }
  for (const escalation of await humans.escalationsPastDeadline(deps.db, now, 100)) {
    await moveEscalation(deps, escalation);
  }
}

async function escalateApproval(
  deps: RuntimeDeps,
  approval: NonNullable<Awaited<ReturnType<typeof humans.findApproval>>>,
  fallback: People,
): Promise<void> {
  const now = deps.clock.now();
  const window = approval.expires_at.getTime() - approval.created_at.getTime();
  const expiresAt = new Date(now.getTime() + Math.max(window, 60_000));
  await deps.db.transaction().execute(async (tx) => {
    const row = await humans.markApprovalEscalated(tx, approval.id, fallback, expiresAt);
    if (!row) return;
    const task = await lockTask(tx, row.task_id);
    if (!task) return;
    const agent = deps.agents.persona(row.agent_id);
    const to = firstOf(fallback);
    const base = { id: row.id, tool: row.tool, args: row.args, expiresAt };
    await insertHandoff(tx, {
      taskId: task.id,
      stepNo: task.step_no,
      kind: "approval_escalated",
      from: {
        kind: "human",
        id: [...approval.approvers.users, ...approval.approvers.groups].join(","),
      },
      to: { kind: "human", id: [...fallback.users, ...fallback.groups].join(",") },
      note: { approval_id: row.id, reason: "no decision before the deadline" },
    });
    const messages: OutboxMessage[] = [
      cardUpdate(
        task,
        approvalIntent(task, agent, {
          ...base,
          approvers: approval.approvers,
          state: { status: "escalated", to, at: now.toISOString() },
          updateTs: approval.card_ts,
        }),
        { table: "approvals", id: row.id },
      ),
      post(task, {
        kind: "notice",
        channel: task.channel_id,
        threadTs: task.thread_ts,
        text: `⏰ Nobody decided on ${row.tool} in time, so it now goes to ${mentionOf(to)}.`,
      }),
      post(
        task,
        approvalIntent(task, agent, { ...base, approvers: fallback, state: { status: "pending" } }),
        { table: "approvals", id: row.id },
      ),
    ];
    await enqueueOutbox(tx, messages);
    await audit(tx, {
      taskId: task.id,
      actor: { kind: "system", id: "baton" },
      kind: "approval_escalated",
      data: { approval_id: row.id, to: fallback },
    });
  });
  await deliverOutbox(deps, { taskId: approval.task_id });
}

async function moveEscalation(
  deps: RuntimeDeps,
  escalation: Awaited<ReturnType<typeof humans.escalationsPastDeadline>>[number],
): Promise<void> {
  const now = deps.clock.now();
  const fallback = escalation.fallback;
  const owner = fallback
    ? { kind: fallback.users[0] ? "user" : "group", id: firstOf(fallback) }
    : escalation.owner;
  const respondBy = new Date(
    now.getTime() +
      Math.max(escalation.respond_by.getTime() - escalation.created_at.getTime(), 60_000),
  );
  await deps.db.transaction().execute(async (tx) => {
    const row = await humans.reassignEscalation(tx, escalation.id, owner, respondBy);
    if (!row) return;
    const task = await lockTask(tx, row.task_id);
    if (!task) return;
    const from = deps.agents.persona(row.from_agent);
    const note = row.note as unknown as EscalationNote;
    const messages: OutboxMessage[] = [];
    if (fallback) {
      await insertHandoff(tx, {
        taskId: task.id,
        stepNo: task.step_no,
        kind: "reassign",
        from: { kind: "human", id: escalation.owner.id },
        to: { kind: "human", id: owner.id },
        note: { reason: "no answer before the deadline" },
      });
      if (task.owner_kind === "human" && task.owner_id === escalation.owner.id)
        await updateTask(tx, task.id, { owner: { kind: "human", id: owner.id } });
      const card = {
        kind: "escalation_card" as const,
        channel: task.channel_id,
        threadTs: task.thread_ts,
        persona: personaOf(from),
      };
      const escalationData = { escalationId: row.id, fromName: from.name, note };
      messages.push(
        cardUpdate(
          task,
          {
            ...card,
            ...(escalation.card_ts ? { updateTs: escalation.card_ts } : {}),
            escalation: {
              ...escalationData,
              owner: escalation.owner as never,
              state: { status: "reassigned", to: owner.id, at: now.toISOString() },
            },
          },
          { table: "escalations", id: row.id },
        ),
        post(
          task,
          {
            ...card,
            escalation: { ...escalationData, owner: owner as never, state: { status: "open" } },
          },
          { table: "escalations", id: row.id },
        ),
      );
    }
    const who = fallback
      ? `it now goes to ${mentionOf(owner.id)}`
      : `${mentionOf(escalation.owner.id)}, it is still waiting for you`;
    messages.push(
      post(task, {
        kind: "notice",
        channel: task.channel_id,
        threadTs: task.thread_ts,
        text: `⏰ Reminder: nobody has picked this up in time; ${who}.`,
      }),
    );
    await enqueueOutbox(tx, messages);
    await audit(tx, {
      taskId: task.id,
      actor: { kind: "system", id: "baton" },
      kind: fallback ? "escalation_reassigned" : "escalation_reminded",
      data: { escalation_id: row.id, to: owner },
    });
  });
  await deliverOutbox(deps, { taskId: escalation.task_id });
}
