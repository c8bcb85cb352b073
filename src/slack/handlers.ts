import type { AcceptOutcome, IncomingMessage } from "../runtime/accept.ts";
import type { DecisionOutcome } from "../runtime/approvals.ts";
import type { ThreadCatchUp } from "../runtime/deps.ts";
import type { EscalationCheck } from "../runtime/escalation-checks.ts";
import type { EscalationChoice } from "../runtime/escalation-decisions.ts";

/** The core use cases the Slack listeners call. Wired in src/start/slack.ts; faked in adapter tests. */
export interface SlackHandlers {
  botUserId(): Promise<string>;
  acceptMessage(message: IncomingMessage): Promise<AcceptOutcome>;
  /** A late mention's thread, read from a job `afterMs` from now (Slack asked to wait). */
  catchUpLater(thread: ThreadCatchUp, afterMs: number): Promise<void>;
  /** A late mention's thread was read to its end: a catch-up of it that fails after lost nothing. */
  threadRead(thread: ThreadCatchUp): Promise<void>;
  /** Whether a late mention's thread was read to its end already: nothing is left to read. */
  threadWasRead(thread: ThreadCatchUp): Promise<boolean>;
  decideApproval(input: {
    approvalId: string;
    userId: string;
    decision: "approved" | "rejected";
    reason?: string;
  }): Promise<DecisionOutcome>;
  /** Checks a click without deciding (audited when refused); undefined: the user may decide. */
  checkApprovalClick(input: {
    approvalId: string;
    userId: string;
    decision: "approved" | "rejected";
  }): Promise<DecisionOutcome | undefined>;
  /** Who may approve, in words, for a refusal message. */
  approvalInfo(
    approvalId: string,
  ): Promise<
    | { toolName: string; approvers: { users: string[]; groups: string[] }; status: string }
    | undefined
  >;
  /** `teamId`: the clicker's own team, as the payload's `user.team_id` says (when it does). */
  decideEscalation(input: {
    escalationId: string;
    userId: string;
    teamId: string | undefined;
    choice: EscalationChoice;
  }): Promise<{ outcome: "decided" } | Exclude<EscalationCheck, { outcome: "ok" }>>;
  /** Whether the clicker may act on the escalation, before a modal is opened for them. */
  checkEscalationClick(input: {
    escalationId: string;
    userId: string;
    teamId: string | undefined;
  }): Promise<EscalationCheck>;
  agentsForSendBack(): { id: string; name: string }[];
  command(input: {
    userId: string;
    channelId: string;
    text: string;
  }): Promise<{ text: string; blocks?: unknown[] }>;
  /** A click on the audit story's next page: read-checked again, since a button value is forgeable. */
  auditPage(input: {
    taskId: string;
    page: number;
    userId: string;
    /** The channel the answer sits in; undefined when Slack did not say. */
    channelId: string | undefined;
  }): Promise<{ text: string; blocks?: unknown[] }>;
  homeView(userId: string): Promise<unknown>;
  /**
   * Slack calls that follow a decision or an event (words to the person, a modal, a command's
   * answer), made after Slack has its acknowledgement (Slack waits for the listener's answer: it
   * shows an interaction as failed after 3 s, and sends an event again). `stopping` aborts at
   * shutdown: a 429's wait that takes it ends then, and the work is dropped (see Afterwards).
   */
  afterwards(what: string, work: (stopping: AbortSignal) => Promise<unknown>): void;
}
