import type { Agent } from "../core/agents/directory.ts";
import type { Executor } from "../db/database.ts";
import type { AuditInput } from "../db/ledger.repository.ts";
import type { OutboxMessage } from "../db/outbox.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import type { TaskChanges } from "../db/tasks.repository.ts";
import type { RuntimeDeps } from "./deps.ts";

/** What a use case decides inside one transaction: written at its end, effects after commit. */
export interface Effects {
  /**
   * The transaction it writes in. A model turn that only reads, answers or hands over has none:
   * its one statement is atomic on its own, and this is the pool (see commitTurn).
   */
  tx: Executor;
  deps: RuntimeDeps;
  task: TaskRow;
  stepNo: number;
  changes: TaskChanges;
  audits: AuditInput[];
  outbox: OutboxMessage[];
  afterCommit: (() => void)[];
}

export interface AgentEffects extends Effects {
  agent: Agent;
}
