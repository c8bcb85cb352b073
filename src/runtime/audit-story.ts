import type { AskerRole } from "../core/policy.ts";
import { headOf } from "../core/text.ts";
import type { Executor } from "../db/database.ts";
import {
  type AuditRecord,
  auditTrail,
  type ProcessedCall,
  whoProcessed as processedCalls,
  type ResolvedRef,
  resolveTaskRef,
} from "../db/reports.repository.ts";
import { NotFoundError } from "../errors.ts";

/** A task's whole story, one readable line per step, for Slack, the CLI and exports. */
export interface AuditEntry {
  at: Date;
  taskId: string;
  /** "agent:billing", "human:U123" or "system". */
  actor: string;
  kind: string;
  text: string;
  data: Record<string, unknown>;
}

export interface AuditReport {
  ref: ResolvedRef["ref"];
  /** Newest first: an order can have several tasks (the question, then the return). */
  taskIds: string[];
  entries: AuditEntry[];
}

const HELP = "Give a task id, an order id, or a link to the task's Slack thread.";

/** A reference of no shape Baton knows: says so, whoever asks, as it tells nothing of any task. */
export function notAReference(ref: string): NotFoundError {
  return new NotFoundError(`"${headOf(ref, 200)}" is not a task reference. ${HELP}`);
}

/** Throws NotFoundError, with what to give instead, when the reference names no task. */
export function mustFind(ref: string, resolved: ResolvedRef | undefined): ResolvedRef {
  if (!resolved) throw notAReference(ref);
  if (resolved.taskIds.length === 0)
    throw new NotFoundError(`No task matches "${headOf(ref, 200)}". ${HELP}`);
  return resolved;
}

/** Throws NotFoundError when the reference names no task. */
export async function auditStory(deps: { db: Executor }, ref: string): Promise<AuditReport> {
  const resolved = mustFind(ref, await resolveTaskRef(deps.db, ref));
  const records = await auditTrail(deps.db, resolved.taskIds);
  return { ref: resolved.ref, taskIds: resolved.taskIds, entries: records.map(toEntry) };
}

/** "Who processed this refund?": `tool` defaults to every write and irreversible tool. */
export async function whoProcessed(
  deps: { db: Executor },
  ref: string,
  tool?: string,
): Promise<ProcessedCall[]> {
  const found = await processedCalls(deps.db, ref, tool);
  mustFind(ref, found?.resolved);
  return found?.calls ?? [];
}

/** Plain text (not mrkdwn: escape it before it goes to Slack). */
export function whoProcessedText(calls: ProcessedCall[], tool?: string): string {
  if (calls.length === 0) return `No ${tool ?? "write"} tool calls for this reference.`;
  return calls
    .map((c) => {
      // The person who decided, in the words of what they decided: a refusal is not an approval.
      const allowed = c.approver
        ? `${c.decision ?? "decided"} by human:${c.approver} (approval ${c.approvalId}${c.decidedAt ? ` at ${c.decidedAt.toISOString()}` : ""})`
        : `allowed by ${c.allowedBy ?? "nobody"}`;
      return `${c.at.toISOString()} ${c.tool}(${argsText(c.args)}) by agent:${c.agentId}: ${c.status}; ${allowed}${c.reason ? `; reason: ${c.reason}` : ""} [task ${c.taskId}]`;
    })
    .join("\n");
}

function toEntry(record: AuditRecord): AuditEntry {
  const actor = record.actorKind === "system" ? "system" : `${record.actorKind}:${record.actorId}`;
  const describe = DESCRIBE[record.kind];
  const text = describe
    ? describe(record.data, record.actorId)
    : `${record.kind}: ${json(record.data, 300)}`;
  return {
    at: record.at,
    taskId: record.taskId,
    actor,
    kind: record.kind,
    text: cut(text, 1000),
    data: record.data,
  };
}

type Data = Record<string, unknown>;

/** `who`: the actor's id, for a sentence that names them. */
const DESCRIBE: Record<string, (d: Data, who: string) => string> = {
  message_received: (d) => `Message: "${str(d.text)}"`,
  task_started: (d) =>
    `Task started${d.agent || d.owner ? ` with ${str(d.agent ?? d.owner)}` : ""}${d.title ? `: "${str(d.title)}"` : ""}`,
  handoff: (d) => {
    const note = obj(d.note);
    if (d.kind === "hand_back") return `Handed back to agent:${str(d.to)}: ${str(note.result)}`;
    return `Handed over to agent:${str(d.to)}: ${str(note.summary)} Needed: ${str(note.needed)}`;
  },
  tool_call: (d) => `${str(d.tool)}(${argsText(d.args)}) → ${str(d.status)}; ${allowedWords(d)}`,
  tool_refused: (d) => `Refused ${str(d.tool)}(${sentArgs(d)}): ${refusedFor(d)}`,
  tool_call_repeated: (d) =>
    `${str(d.tool)} called again in the same reply (${str(d.call_id)}, as ${str(d.repeat_of)}); not run twice`,
  tool_shadowed: (d) => `Proposed ${str(d.tool)}(${argsText(d.args)}) in shadow mode; not run`,
  model_error: (d) =>
    `Model error: ${str(d.error ?? d.message)}${d.tool ? ` (${str(d.tool)})` : ""}`,
  approval_requested: (d) => {
    const names = people(obj(d.approvers));
    const why = d.why === undefined ? "" : ` (${str(d.why)})`;
    return `Asked ${names} to approve ${str(d.tool)}(${argsText(d.args)}) under policy ${str(d.policy)}${why}${askedBy(obj(d.asked_by))}, expires ${str(d.expires_at)}`;
  },
  approval_decided: (d) => {
    const verdict = { approved: "Approved", rejected: "Rejected", expired: "Expired" }[
      str(d.decision)
    ];
    const reason = d.reason ? `; reason: "${str(d.reason)}"` : "";
    return `${verdict ?? str(d.decision)} ${str(d.tool)}(${argsText(d.args)})${reason}`;
  },
  approval_withdrawn: (d) => `Approval of ${str(d.tool)} withdrawn: the task stopped first`,
  approval_refused: (d, who) => `Approval click refused: ${who} ${refusedWhy(d)}`,
  approval_escalated: (d) =>
    `Nobody decided in time: the approval${d.tool ? ` of ${str(d.tool)}` : ""} went to ${people(obj(d.to))}`,
  approval_click_ignored: (d) => `Approval click ignored: already ${str(d.status)}`,
  escalated: (d) => {
    const note = obj(d.note);
    const limit = d.reason === "cap" || d.reason === "limit";
    const why = limit ? "as it reached a limit" : "as the agent asked for a person";
    return `Escalated to ${owned(obj(d.owner))}, ${why}: ${str(note.summary)}${limit && note.reason ? ` ${str(note.reason)}` : ""}`;
  },
  escalation_decided: (d) => {
    const choice = obj(d.choice);
    const where = d.from === "thread" ? " (in the thread)" : "";
    if (choice.kind === "take_over") return `Took the escalated work over${where}`;
    const saying = choice.instruction ? `, saying "${str(choice.instruction)}"` : "";
    return `Sent the escalated work to agent:${str(choice.agentId)}${saying}${where}`;
  },
  escalation_refused: (d) =>
    `Escalation click refused: ${d.reason === "own_request" ? "they asked for it themselves" : "not its owner"} (it is ${owned(obj(d.owner))}'s)`,
  escalation_reassigned: (d) =>
    `Nobody answered in time: the escalation went to ${owned(obj(d.to))}`,
  escalation_reminded: (d) => `Nobody answered in time: ${owned(obj(d.to))} reminded`,
  task_closed: () => "Marked done",
  close_refused: (d) => `Refused to mark done: the task is ${str(obj(d.owner).id)}'s`,
  task_reopened: (d) => {
    const after = { done: " after its answer", failed: " after it failed" }[str(d.was)] ?? "";
    const owner = d.owner_kind === "agent" ? `agent:${str(d.owner)}` : str(d.owner);
    return `Reopened by a reply in its thread${after}; back with ${owner}`;
  },
  answer: (d) => `Answered: "${str(d.text)}"`,
  task_failed: (d) => `Task failed: ${str(d.reason)}`,
  attempt_failed: (d) =>
    `Try failed, ${d.retried === false ? "no tries left" : "retried"}: ${str(d.error)}`,
  task_stopped: (d) => `Task stopped and handed to a person: ${str(d.reason)}`,
  model_call: (d) =>
    `${str(d.model)}: ${num(d.prompt_tokens)} prompt + ${num(d.completion_tokens)} completion tokens${d.usage_estimated === true ? " (estimated: the server sent no usage)" : ""}, $${num(d.cost_usd).toFixed(6)}, ${num(d.latency_ms)} ms (${str(d.outcome)})`,
};

const str = (value: unknown): string =>
  typeof value === "string" ? value : value == null ? "" : json(value, 300);
const num = (value: unknown): number => (typeof value === "number" ? value : Number(value) || 0);
const obj = (value: unknown): Data =>
  value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Data) : {};
const list = (value: unknown): string[] => (Array.isArray(value) ? value.map(str) : []);

/** Who allowed a call, or, for one a person's decision or none kept from running, why it did not run. */
function allowedWords(d: Data): string {
  if (d.status === "rejected")
    return d.decided_by ? `rejected by human:${str(d.decided_by)}` : "not run";
  if (d.status === "expired") return "not run: nobody decided in time";
  if (d.status === "withdrawn") return "not run: the task stopped first";
  return `allowed by ${str(d.allowed_by) || "nobody"}`;
}

/**
 * What a refused call was sent: its arguments as read (a rate limit's), or as the model wrote them
 * (the allowlist's, a schema's), which need not be JSON, nor whole past 2,000 characters.
 */
function sentArgs(d: Data): string {
  if ("args" in d) return argsText(d.args);
  const written = str(d.arguments);
  try {
    return argsText(JSON.parse(written));
  } catch {
    return cut(written, 300);
  }
}

/** Why a call was refused, in the words the model was told, less the tool's name they start with. */
function refusedFor(d: Data): string {
  const told = str(d.message ?? d.reason);
  const named = `${str(d.tool)}: `;
  return told.startsWith(named) ? told.slice(named.length) : told;
}

/** Why a person's approval click was refused, after their id. */
function refusedWhy(d: Data): string {
  if (d.reason === "not_an_approver") return "is not one of its approvers";
  if (d.reason !== "own_request") return `may not decide it (${str(d.reason)})`;
  const part = ASKED_AS[str(d.asked_as)];
  return `asked for it${part ? ` (${part})` : ""}, so may not decide it`;
}

/** The part a person had in asking for an approval. */
const ASKED_AS: Record<string, string> = {
  requester: "started the task",
  handed_on: "handed the work on",
  thread: "wrote in its thread",
} satisfies Record<AskerRole, string>;

/** "U1, S2" from `{ users, groups }`. */
const people = (who: Data): string =>
  [...list(who.users), ...list(who.groups)].join(", ") || "nobody";

/** "channel C1", "user U1" from an owner `{ kind, id }`. */
const owned = (owner: Data): string => `${str(owner.kind)} ${str(owner.id)}`.trim();

/** ", requested by human:U1, handed on by human:U2": who asked, as the approval card named them. */
function askedBy(who: Data): string {
  const parts: [string, string[]][] = [
    ["requested by", who.requester ? [str(who.requester)] : []],
    ["handed on by", list(who.handed_on_by)],
    ["asked in the thread by", list(who.in_thread)],
  ];
  return parts
    .filter(([, ids]) => ids.length > 0)
    .map(([words, ids]) => `, ${words} ${ids.map((id) => `human:${id}`).join(", ")}`)
    .join("");
}

/** `order_id=1077, amount_usd=149`: arguments as a person reads them. */
export function argsText(args: unknown): string {
  const fields = obj(args);
  const keys = Object.keys(fields);
  if (keys.length === 0) return args == null ? "" : json(args, 300);
  return cut(keys.map((k) => `${k}=${json(fields[k], 120)}`).join(", "), 300);
}

function json(value: unknown, max: number): string {
  try {
    return cut(JSON.stringify(value) ?? String(value), max);
  } catch {
    return cut(String(value), max);
  }
}

function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

// ---- Exports ---------------------------------------------------------------------------------

export const CSV_COLUMNS = ["at", "actor", "kind", "text", "data", "task_id"] as const;

/** RFC 4180, CRLF line ends. A cell a spreadsheet would run as a formula starts with a quote. */
export function auditCsv(entries: readonly AuditEntry[]): string {
  const rows = entries.map((e) => [
    e.at.toISOString(),
    e.actor,
    e.kind,
    e.text,
    JSON.stringify(e.data),
    e.taskId,
  ]);
  return `${[[...CSV_COLUMNS], ...rows].map((row) => row.map(csvCell).join(",")).join("\r\n")}\r\n`;
}

function csvCell(value: string): string {
  const safe = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

/** Reads RFC 4180 text (CRLF or LF) back into rows of cells. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = "";
  let quoted = false;
  const endRow = () => {
    row.push(cell);
    rows.push(row);
    row = [];
    cell = "";
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted && ch === '"' && text[i + 1] === '"') {
      cell += '"';
      i++;
    } else if (ch === '"') {
      quoted = !quoted;
    } else if (quoted) {
      cell += ch;
    } else if (ch === ",") {
      row.push(cell);
      cell = "";
    } else if (ch === "\n") {
      endRow();
    } else if (ch === "\r" && text[i + 1] === "\n") {
      endRow();
      i++;
    } else {
      cell += ch;
    }
  }
  if (cell !== "" || row.length > 0) rows.push([...row, cell]);
  return rows;
}

export function auditJson(entries: readonly AuditEntry[]): string {
  return JSON.stringify(
    entries.map((e) => ({ ...e, at: e.at.toISOString() })),
    null,
    2,
  );
}

/** One line per step for a terminal; of several tasks (an order's), each line names its task. */
export function auditText(entries: readonly AuditEntry[]): string {
  const several = new Set(entries.map((e) => e.taskId)).size > 1;
  return entries
    .map(
      (e) =>
        `${e.at.toISOString()}  ${e.actor}  ${e.kind}  ${e.text}${several ? ` [task ${e.taskId}]` : ""}`,
    )
    .join("\n");
}
