// A person who took a task over hands it to an agent from its thread, by naming the agent.
import type { Tx } from "../db/database.ts";
import { takenOverEscalation } from "../db/escalations.repository.ts";
import { audit } from "../db/ledger.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import type { IncomingMessage } from "./accept.ts";
import type { RuntimeDeps } from "./deps.ts";
import { returnToAgent, sendBackTakenOver } from "./escalation-decisions.ts";
import { namedAgent } from "./named-agent.ts";

/**
 * The person who took a task's escalation over, and holds it still (or closed it), names an agent
 * in its thread: "@Baton billing: refund 40 USD". Anyone else naming one, an approver whose card
 * waits, or a plain reply, is a reply.
 */
export async function handOnNamed(
  deps: RuntimeDeps,
  tx: Tx,
  task: TaskRow,
  message: IncomingMessage,
) {
  const holds =
    task.owner_kind === "human" &&
    task.owner_id === message.user &&
    (task.status === "waiting_human" || task.status === "done");
  const named = holds ? namedAgent(deps, message.text) : undefined;
  if (!named) return undefined;
  const taken = await takenOverEscalation(tx, task.id);
  return taken?.decided_by === message.user ? named : undefined;
}

/** As the escalation card's "Hand it to an agent": the agent starts again with these words. */
export async function handToAgent(
  deps: RuntimeDeps,
  tx: Tx,
  task: TaskRow,
  message: IncomingMessage,
  handOn: NonNullable<ReturnType<typeof namedAgent>>,
) {
  await audit(tx, {
    taskId: task.id,
    actor: { kind: "human", id: message.user },
    kind: "message_received",
    data: { text: message.text, ts: message.ts },
  });
  const input = { userId: message.user, agent: handOn.agent, instruction: handOn.text };
  await returnToAgent(deps, tx, task, input);
  await sendBackTakenOver(deps, tx, task, input);
}
