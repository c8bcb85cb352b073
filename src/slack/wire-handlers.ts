import { findApproval } from "../db/approvals.repository.ts";
import { type HomeData, homeData } from "../db/home.repository.ts";
import { parseTaskRef } from "../db/reports.repository.ts";
import { cardsOfTasks } from "../db/task-cards.repository.ts";
import { isBatonError } from "../errors.ts";
import { type AcceptOutcome, acceptMessage } from "../runtime/accept.ts";
import { checkApprovalClick, decideApproval } from "../runtime/approvals.ts";
import { recordThreadRead, threadWasRead } from "../runtime/catch-ups.ts";
import { closeTask } from "../runtime/close-task.ts";
import { isDirectMessage, openPlace } from "../runtime/decision-place.ts";
import type { RuntimeDeps } from "../runtime/deps.ts";
import { checkEscalationClick } from "../runtime/escalation-checks.ts";
import { decideEscalation } from "../runtime/escalation-decisions.ts";
import { agentRecords, type Reader, readableCalls, readableStory } from "../runtime/read-access.ts";
import { tellPrivately } from "../runtime/waiting-replies.ts";
import { agentsReport } from "./agents-report.ts";
import type { SlackHandlers } from "./handlers.ts";
import { homeMemberships } from "./home-members.ts";
import { escapeMrkdwn } from "./mrkdwn.ts";
import { ownerName, taskStatus } from "./status.ts";
import { appHome } from "./views/app-home.ts";
import { auditStoryBlocks } from "./views/audit-story.ts";
import { whoProcessedWords } from "./views/who-processed.ts";
import {
  agentsDaysWords,
  closeWords,
  HELP_TEXT,
  refusalWords,
  taskStatusWords,
  USAGE,
  unknownVerbWords,
  withheldWords,
} from "./words.ts";

const AUDIT_PAGE_SIZE = 25;

/** What the notice of a refused message does, as a shutdown that drops it logs. */
const REFUSALS_TOLD: Partial<Record<AcceptOutcome, string>> = {
  rate_limited: "tell a person they are over their task limit",
  empty_mention: "tell a person their mention had no question",
  mention_in_edit: "tell a person a mention added by an edit is not read",
  reply_to_notice: "tell a person a reply under a notice is not read",
};

type Answer = { text: string; blocks?: unknown[] };

/** Binds the Slack listeners to the core use cases, and shapes their answers for Slack. */
export function createSlackHandlers(
  deps: RuntimeDeps,
  botUserId: () => Promise<string>,
): SlackHandlers {
  return {
    botUserId,
    ...messageHandlers(deps),
    ...decisionHandlers(deps),
    ...reportHandlers(deps),
    afterwards: (what, work) => deps.afterwards.run(what, work),
    homeView: (userId) => homeView(deps, userId),
  };
}

/** Messages typed in Slack, and the late mentions' threads read after them. */
function messageHandlers(
  deps: RuntimeDeps,
): Pick<SlackHandlers, "acceptMessage" | "catchUpLater" | "threadRead" | "threadWasRead"> {
  return {
    acceptMessage: async (message) => {
      const outcome = await acceptMessage(deps, message);
      deps.metrics.slackEvents.inc({ outcome });
      const limit = deps.agents.file.policies.rate_limits.new_tasks_per_person;
      const words = refusalWords(outcome, limit);
      // Its keys are kept, so no retry says it again: a notice Slack does not take is only logged.
      if (words)
        tellPrivately(deps, message, words, {
          what: REFUSALS_TOLD[outcome] ?? "tell a person their message was refused",
          outboxId: `${outcome.replaceAll("_", "-")}:${message.eventId}`,
        });
      return outcome;
    },
    catchUpLater: (thread, afterMs) => deps.catchUps.enqueue(thread, afterMs),
    threadRead: (thread) => recordThreadRead(deps, thread),
    threadWasRead: (thread) => threadWasRead(deps, thread),
  };
}

/** The approval and escalation cards' buttons and forms. */
function decisionHandlers(
  deps: RuntimeDeps,
): Pick<
  SlackHandlers,
  | "decideApproval"
  | "checkApprovalClick"
  | "approvalInfo"
  | "decideEscalation"
  | "checkEscalationClick"
  | "agentsForSendBack"
> {
  return {
    decideApproval: (input) => decideApproval(deps, input),
    checkApprovalClick: (input) => checkApprovalClick(deps, input),
    async approvalInfo(approvalId) {
      const row = await findApproval(deps.db, approvalId);
      return row && { toolName: row.tool, approvers: row.approvers, status: row.status };
    },
    decideEscalation: (input) => decideEscalation(deps, input),
    checkEscalationClick: (input) => checkEscalationClick(deps, input),
    agentsForSendBack: () => deps.agents.all().map((a) => ({ id: a.id, name: a.name })),
  };
}

/** `/baton`'s answers, and the audit story's further pages. */
function reportHandlers(deps: RuntimeDeps): Pick<SlackHandlers, "command" | "auditPage"> {
  return {
    command({ text, userId, channelId }) {
      const { verb, rest } = commandWords(text);
      return userFaultAsText(() => commandAnswer(deps, verb, rest, { userId, channelId }));
    },
    auditPage: ({ taskId, page, userId, channelId }) =>
      userFaultAsText(() => auditAnswer(deps, taskId, page, { userId, channelId })),
  };
}

function commandWords(text: string): { verb: string; rest: string[] } {
  // A link Slack formatted, `<url|label>`, is one word however many spaces its label holds; it
  // holds no `<` (Slack escapes it), so an unclosed `<` is scanned to the next one, not to the
  // end: 40,000 of them cost no quadratic time. Invisible format characters pasted beside a
  // word (zero-width spaces, direction marks) belong to no verb, as to no reference.
  const [verb = "help", ...words] = text.replace(/\p{Cf}/gu, "").match(/<[^<>]*>|[^\s<]+|</g) ?? [];
  // "status order 1042", "done task <id>": the kind of reference, said aloud, is not one.
  const rest =
    words.length > 1 && /^(order|task|thread)$/i.test(words[0] ?? "") ? words.slice(1) : words;
  return { verb, rest };
}

async function commandAnswer(
  deps: RuntimeDeps,
  verb: string,
  rest: string[],
  reader: Reader,
): Promise<Answer> {
  const ref = rest[0] ?? "";
  if (bareReference(verb, rest)) return { text: await taskStatus(deps, verb, reader) };
  switch (verb.toLowerCase()) {
    case "status":
      return { text: ref ? await taskStatus(deps, ref, reader) : USAGE.status };
    case "audit":
      return ref ? await auditAnswer(deps, ref, 1, reader) : { text: USAGE.audit };
    case "done":
      return { text: ref ? await doneWords(deps, ref, reader) : USAGE.done };
    case "who":
      return { text: ref ? await whoWords(deps, ref, rest[1], reader) : USAGE.who };
    case "agents":
      return { text: await agentsWords(deps, ref, reader.userId) };
    case "help":
      return { text: HELP_TEXT };
    default:
      return { text: `${unknownVerbWords(verb)}\n${HELP_TEXT}` };
  }
}

/**
 * `/baton 1077`, `/baton <thread link>`: a reference alone is asked for its status. An order id
 * with no digit is not taken for one: that is a mistyped verb (`/baton stauts`), said as such.
 */
function bareReference(verb: string, rest: string[]): boolean {
  if (rest.length > 0) return false;
  const ref = parseTaskRef(verb);
  return ref !== undefined && (ref.kind !== "order" || /\d/.test(ref.orderId));
}

async function doneWords(deps: RuntimeDeps, ref: string, reader: Reader): Promise<string> {
  const closed = await closeTask(deps, { ref, ...reader });
  return closeWords(closed, (o) => ownerName(deps, o.kind, o.id), ref);
}

async function whoWords(
  deps: RuntimeDeps,
  ref: string,
  tool: string | undefined,
  reader: Reader,
): Promise<string> {
  const { calls, withheld } = await readableCalls(deps, ref, reader, tool);
  const agentName = (id: string) => deps.agents.get(id)?.name ?? id;
  const lines = [whoProcessedWords(calls, tool, agentName), withheldWords(withheld)];
  return lines.filter(Boolean).join("\n");
}

async function agentsWords(deps: RuntimeDeps, ref: string, userId: string): Promise<string> {
  const days = ref ? Number(ref) : 30;
  if (!Number.isInteger(days) || days < 1 || days > 365) return agentsDaysWords(ref);
  const { agents, activity } = await agentRecords(deps, userId, days);
  return agentsReport(agents, activity, days);
}

async function auditAnswer(
  deps: RuntimeDeps,
  ref: string,
  page: number,
  reader: Reader,
): Promise<Answer> {
  const report = await readableStory(deps, ref, reader);
  const taskId = report.taskIds[0] ?? "";
  const entries = report.entries.map((e) => ({
    at: e.at,
    actor: actorName(deps, e.actor),
    ...(e.actor.startsWith("human:") && { userId: e.actor.slice("human:".length) }),
    kind: e.kind,
    parts: e.parts,
  }));
  return auditStoryBlocks(entries, {
    taskId,
    page,
    pageSize: AUDIT_PAGE_SIZE,
    otherTaskIds: report.otherTaskIds,
    agentName: (id) => deps.agents.get(id)?.name ?? id,
  });
}

/** A bad reference or a refusal is the asker's to fix: say so; anything else goes to app.error. */
async function userFaultAsText(answer: () => Promise<Answer>): Promise<Answer> {
  try {
    return await answer();
  } catch (error) {
    if (isBatonError(error) && error.fault === "user") return { text: escapeMrkdwn(error.message) };
    throw error;
  }
}

function actorName(deps: RuntimeDeps, actor: string): string {
  const [kind, id = ""] = actor.split(":");
  if (kind === "agent") return deps.agents.get(id)?.name ?? id;
  if (kind === "human") return id;
  return "Baton";
}

type OpenTask = HomeData["openTasks"][number];
type WaitingApproval = HomeData["waitingApprovals"][number];

async function homeView(deps: RuntimeDeps, userId: string): Promise<unknown> {
  const { groups, channels } = await homeMemberships(deps, userId);
  const data = await homeData(deps.db, userId, groups, channels);
  const openLink = await openTaskLinks(deps, data.openTasks, userId);
  return appHome({
    userId,
    openTaskCount: data.openTaskCount,
    waitingApprovalCount: data.waitingApprovalCount,
    openTasks: data.openTasks.map((t) => ({
      taskId: t.id,
      title: t.title,
      // As written: App Home escapes it. A person's or group's ids are shown by ownerIds.
      ownerName: deps.agents.get(t.owner_id)?.name ?? t.owner_id,
      ...(t.owner_kind === "human" && { ownerIds: t.owner_id.split(",") }),
      status: taskStatusWords(t.status),
      updatedAt: t.last_activity_at,
      permalink: openLink(t),
    })),
    waitingApprovals: data.waitingApprovals.map((a) => waitingApprovalRow(deps, a)),
    recentDecisions: data.recentDecisions.map((d) => ({
      approvalId: d.id,
      toolName: d.tool,
      decision: d.status as "approved" | "rejected" | "expired",
      at: d.decided_at ?? new Date(0),
      ...(d.reason && { reason: d.reason }),
    })),
  });
}

/** A direct message's task is linked to its card for all but its requester (see openPlace). */
async function openTaskLinks(
  deps: RuntimeDeps,
  openTasks: OpenTask[],
  userId: string,
): Promise<(t: OpenTask) => string> {
  const inDirectMessages = openTasks.filter((t) => isDirectMessage(t.channel_id));
  const cards = await cardsOfTasks(
    deps.db,
    inDirectMessages.map((t) => t.id),
  );
  return (t) => placeLink(deps, openPlace(t, cards.get(t.id), t.requester_id === userId));
}

function waitingApprovalRow(deps: RuntimeDeps, a: WaitingApproval) {
  return {
    approvalId: a.id,
    toolName: a.tool,
    agentName: deps.agents.get(a.agent_id)?.name ?? a.agent_id,
    summary: a.title,
    requestedAt: a.created_at,
    // A direct message's task: its card is where the approvers are, its thread is not.
    permalink: placeLink(
      deps,
      openPlace(
        a,
        a.card_channel && a.card_ts ? { channel: a.card_channel, ts: a.card_ts } : undefined,
      ),
    ),
  };
}

function placeLink(deps: RuntimeDeps, place: { channel: string; ts: string }): string {
  return deps.chat.threadLink(place.channel, place.ts);
}
