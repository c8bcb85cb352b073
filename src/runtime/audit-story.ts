import { argsText, cut, DESCRIBE, type Part, plainWords, str } from "../core/audit-words.ts";
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
  /** The line as the CLI prints it, ids as the ledger keeps them. */
  text: string;
  /** The same line in parts, for a surface that names people and agents its own way (Slack). */
  parts: Part[];
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
      return oneLine(
        `${c.at.toISOString()} ${c.tool}(${argsText(c.args)}) by agent:${c.agentId}: ${c.status}; ${allowed}${c.reason ? `; reason: ${c.reason}` : ""} [task ${c.taskId}]`,
      );
    })
    .join("\n");
}

function toEntry(record: AuditRecord): AuditEntry {
  const actor = record.actorKind === "system" ? "system" : `${record.actorKind}:${record.actorId}`;
  const describe = DESCRIBE[record.kind];
  const parts = describe
    ? describe(record.data, record.actorId)
    : [`${record.kind}: ${str(record.data)}`];
  return {
    at: record.at,
    taskId: record.taskId,
    actor,
    kind: record.kind,
    text: cut(plainWords(parts), 1000),
    parts,
    data: record.data,
  };
}

// ---- Exports ---------------------------------------------------------------------------------

/** What the exports print: the line in words, and the data it was told from. */
type Exported = Omit<AuditEntry, "parts">;

export const CSV_COLUMNS = ["at", "actor", "kind", "text", "data", "task_id"] as const;

/** RFC 4180, CRLF line ends. A cell a spreadsheet would run as a formula starts with a quote. */
export function auditCsv(entries: readonly Exported[]): string {
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

export function auditJson(entries: readonly Exported[]): string {
  return JSON.stringify(
    entries.map((e) => ({
      at: e.at.toISOString(),
      taskId: e.taskId,
      actor: e.actor,
      kind: e.kind,
      text: e.text,
      data: e.data,
    })),
    null,
    2,
  );
}

/** One line per step for a terminal; of several tasks (an order's), each line names its task. */
export function auditText(entries: readonly Exported[]): string {
  const several = new Set(entries.map((e) => e.taskId)).size > 1;
  return entries
    .map((e) =>
      oneLine(
        `${e.at.toISOString()}  ${e.actor}  ${e.kind}  ${e.text}${several ? ` [task ${e.taskId}]` : ""}`,
      ),
    )
    .join("\n");
}

// A control character in a customer's or a model's text (ESC, a carriage return) would drive the
// operator's terminal: it is shown as its escape instead.
const CONTROL = /(?![\t\n])\p{Cc}/gu;

/**
 * One step for a terminal: text a person or a model wrote keeps its line breaks, its later lines
 * indented, so none can pass for a step of its own ("2025-01-06T09:11:00.000Z  human:U0LEE …").
 */
function oneLine(line: string): string {
  return line
    .replace(/\r\n?/g, "\n")
    .replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)
    .replaceAll("\n", "\n  ");
}
