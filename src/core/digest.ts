/**
 * The daily digest as data: what is idle, waiting or failed, and for whom.
 * It travels in a `ChatIntent` stored as JSON in the outbox, so every date is an ISO string:
 * a `Date` would come back from the database as a string anyway, typed as something it is not.
 */

export interface DigestTaskItem {
  title: string;
  /** A human owner's user or group id (shown as a mention), or an agent's display name. */
  owner: { kind: "human" | "agent"; id: string; name?: string };
  /** ISO 8601. */
  lastActivityAt: string;
  link?: string;
}

export interface DigestApprovalItem {
  toolName: string;
  agentName: string;
  taskTitle: string;
  /** Slack user and group ids the approval waits on. */
  approverIds: string[];
  /** ISO 8601. */
  requestedAt: string;
  link?: string;
}

export interface DigestFailedItem {
  title: string;
  /** Left out where the title is withheld: a tool's or model's error can quote the customer. */
  reason?: string;
  /** ISO 8601. */
  failedAt: string;
  link?: string;
}

export interface DigestInput {
  /**
   * The team channel sees everything; an owner (a person, or a lane's channel that owns work)
   * sees only their own items.
   */
  audience: "channel" | "owner" | "lane";
  /** ISO 8601. */
  asOf: string;
  staleAfterMs: number;
  approvalStaleAfterMs: number;
  staleTasks: DigestTaskItem[];
  staleApprovals: DigestApprovalItem[];
  failedTasks: DigestFailedItem[];
  /** Lists that hold more than listed. */
  capped?: { staleTasks?: boolean; staleApprovals?: boolean; failedTasks?: boolean };
  /**
   * How many a capped list holds in all; `atLeast` when the read itself was cut short. A digest
   * queued before this was added has none, and its count reads as a floor.
   */
  totals?: { staleTasks?: DigestTotal; staleApprovals?: DigestTotal; failedTasks?: DigestTotal };
}

export type DigestList = "staleTasks" | "staleApprovals" | "failedTasks";

export interface DigestTotal {
  count: number;
  atLeast: boolean;
}

/** How many of `list` there are, as far as known. */
export function digestTotal(input: DigestInput, list: DigestList): DigestTotal {
  const total = input.totals?.[list];
  if (total) return total;
  return { count: input[list].length, atLeast: input.capped?.[list] === true };
}

export function isDigestEmpty(input: DigestInput): boolean {
  return input.staleTasks.length + input.staleApprovals.length + input.failedTasks.length === 0;
}
