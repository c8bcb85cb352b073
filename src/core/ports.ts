import type { DigestInput } from "./digest.ts";
import type { EscalationNote, HandBackNote, HandoffNote } from "./handoffs/note.ts";

/** The rate limit a task's replies kept meeting: at most `max` runs in `perMs`. */
export interface RateLimitStop {
  max: number;
  perMs: number;
  until: string;
}

/** What the runtime needs from the chat platform. Only the Slack adapter implements it. */
export interface ChatSurface {
  /** Says one thing in Slack; `outboxId` travels in the message metadata. */
  deliver(intent: ChatIntent, outboxId: string): Promise<{ ts?: string; channel?: string }>;
  /**
   * Finds a message Baton already posted for an outbox row (by its metadata), so a delivery
   * interrupted after Slack accepted it is not posted twice. `writtenAt`, when the row was
   * written, bounds the search of a conversation's history for a message outside a thread.
   */
  findPosted(intent: ChatIntent, outboxId: string, writtenAt: Date): Promise<string | undefined>;
  /** Members of a Slack user group, for approver checks. */
  groupMembers(groupId: string, options?: MemberLookupOptions): Promise<string[]>;
  /** Members of a channel, for an escalation lane the agents file gives to a channel. */
  channelMembers(channelId: string, options?: MemberLookupOptions): Promise<string[]>;
  /** A link that opens a task's thread in Slack, for digests, notices and the App Home. */
  threadLink(channel: string, threadTs: string): string;
  /** A link that opens a channel in Slack. */
  channelLink(channel: string): string;
  /** The organization that installed Baton; undefined while the platform has not said who it is. */
  ownOrganization(): Promise<Organization | undefined>;
}

/**
 * Who installed Baton, as Slack's auth.test says: its workspace (`T…`) and, when that workspace is
 * part of an Enterprise organization, the organization (`E…`); `name` is the workspace's.
 */
export interface Organization {
  teamId: string;
  enterpriseId?: string | undefined;
  name?: string | undefined;
}

export interface MemberLookupOptions {
  /**
   * Whether a rate limit (Slack's 429) is waited out, as a decision's check does (default), or
   * fails the lookup at once, as App Home's do: it shows less now rather than keep a person waiting.
   */
  waitOutRateLimit?: boolean;
}

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** Who speaks: each agent posts under its own name and icon (chat:write.customize). */
export interface Persona {
  name: string;
  icon: string;
}

/**
 * What the runtime wants said in Slack, as validated data. Stored in the outbox inside the
 * transaction that decided it, and rendered into Block Kit only by the Slack adapter.
 */
export type ChatIntent =
  | { kind: "agent_reply"; channel: string; threadTs: string; persona: Persona; text: string }
  | {
      kind: "handoff_card";
      channel: string;
      threadTs: string;
      persona: Persona;
      fromName: string;
      toName: string;
      handoff: { kind: "transfer"; note: HandoffNote } | { kind: "hand_back"; note: HandBackNote };
    }
  | {
      kind: "approval_card";
      channel: string;
      /** None when the card is asked outside the task's thread (see decision-place.ts). */
      threadTs?: string;
      persona: Persona;
      /** Set when the card is updated in place after a decision. */
      updateTs?: string;
      approval: {
        approvalId: string;
        agentName: string;
        toolName: string;
        args: Record<string, unknown>;
        /**
         * The tool's argument names in its schema's order, which the card lists `args` in: a row
         * read back (jsonb) has its keys in another order. Absent from cards queued before it was
         * added (their arguments are listed by name).
         */
        argOrder?: string[];
        /** Why the call waits, when its arguments alone do not say. */
        reason?: string;
        requesterId: string;
        /** Who else asked (see `Askers`); absent from cards queued before they were named. */
        handedOnBy?: string[];
        askedInThread?: string[];
        approvers: { users: string[]; groups: string[] };
        expiresAt: string;
        shadow?: boolean;
        state:
          | { status: "pending" }
          /** `notRun`: approved, and then not run, because the agents file changed first. */
          | { status: "approved"; by: string; at: string; notRun?: boolean }
          | { status: "rejected"; by: string; at: string; reason: string }
          | { status: "expired"; at: string }
          | { status: "withdrawn"; at: string }
          /** `why`: the agents file no longer lets the call run, in words. */
          | { status: "cancelled"; at: string; why: string }
          | { status: "escalated"; to: string; at: string };
      };
    }
  | {
      kind: "escalation_card";
      channel: string;
      threadTs?: string;
      persona: Persona;
      updateTs?: string;
      escalation: {
        escalationId: string;
        fromName: string;
        owner: { kind: "user" | "group" | "people" | "channel"; id: string };
        note: EscalationNote;
        /** The task's requester: a note Baton wrote names them as `<@ID>`. */
        requesterId?: string;
        state:
          | { status: "open" }
          /** `closed`: the person marked the work done (`/baton done`); until then it may go on. */
          | { status: "taken_over"; by: string; at: string; closed?: { by: string; at: string } }
          | { status: "sent_back"; by: string; at: string; toName: string; instruction: string }
          | { status: "reassigned"; to: string; at: string };
      };
    }
  /** `broadcast`: a reply in the thread that the channel sees too (a page that must not be missed). */
  | { kind: "notice"; channel: string; threadTs?: string; broadcast?: boolean; text: string }
  | {
      kind: "failure_notice";
      channel: string;
      threadTs: string;
      taskId: string;
      reason: string;
      /** Stopped by a tool's rate limit: a reply before `until` (ISO) would meet it again. */
      limit?: RateLimitStop;
    }
  | { kind: "ephemeral"; channel: string; threadTs?: string; user: string; text: string }
  | { kind: "direct_message"; user: string; text: string }
  /** The daily digest, to the team channel (not in a thread) or to one person by DM. */
  | { kind: "digest"; channel: string; digest: DigestInput }
  | { kind: "digest_dm"; user: string; digest: DigestInput };
