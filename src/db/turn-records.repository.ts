import { sql } from "kysely";
import type { ChatMessage } from "../core/model.ts";
import type { Tx } from "./database.ts";
import {
  type AuditInput,
  auditRows,
  conversationRows,
  type ModelCallRecord,
  modelCallRow,
} from "./ledger.repository.ts";
import { type OutboxMessage, outboxRows } from "./outbox.repository.ts";

/**
 * A turn's append-only records (its model call, conversation, audit events and Slack outbox) in
 * one statement of data-modifying CTEs: one round trip instead of four, in the turn's transaction.
 */
export async function writeTurnRecords(
  tx: Tx,
  records: {
    modelCall: ModelCallRecord;
    conversation: { taskId: string; stintNo: number; stepNo: number; message: ChatMessage }[];
    audits: AuditInput[];
    outbox: readonly OutboxMessage[];
  },
): Promise<void> {
  // Kysely types each CTE by its output; inserts without RETURNING have none, hence the loose chain.
  // biome-ignore lint/suspicious/noExplicitAny: see above; each insert below is fully typed.
  let query: any = tx.with("model_call", (db) =>
    db.insertInto("model_calls").values(modelCallRow(records.modelCall)),
  );
  if (records.conversation.length > 0) {
    query = query.with("conversation_rows", (db: Tx) =>
      db.insertInto("conversation").values(conversationRows(records.conversation)),
    );
  }
  if (records.audits.length > 0) {
    query = query.with("audit_rows", (db: Tx) =>
      db.insertInto("audit_events").values(auditRows(records.audits)),
    );
  }
  if (records.outbox.length > 0) {
    query = query.with("outbox_rows", (db: Tx) =>
      db.insertInto("slack_outbox").values(outboxRows(records.outbox)),
    );
  }
  await query.selectNoFrom(sql<number>`1`.as("written")).execute();
}
