import { answerParts } from "../core/answer-parts.ts";
import type { ChatIntent } from "../core/ports.ts";
import type { Tx } from "../db/database.ts";
import {
  ANSWER_DM_REFUSED,
  ANSWER_SENT_BY_DM,
  type AnswerLost,
  answerDmQueued,
  answersLost,
  lastAnswer,
} from "../db/lost-threads.repository.ts";
import { enqueueOutbox } from "../db/outbox.repository.ts";
import { lockTask } from "../db/tasks.repository.ts";
import type { RuntimeDeps } from "./deps.ts";
import { lostThreadWhy } from "./lost-threads.ts";
import { deliverOutbox } from "./outbox.ts";

/** A DM reads as a message, not a document: a longer answer is cut, saying where the rest is. */
const DM_ANSWER_MAX = 3_000;

/**
 * A done task whose answer Slack refused for good (see answersLost): the requester never saw it,
 * so it goes to them by DM, the one place Baton can still reach them. Once: the DM is queued under
 * the task's lock, after looking for one another replica queued. The audit trail says it was sent
 * once Slack has it, or that Slack refused it too (a requester deactivated since), not before.
 */
export async function sendLostAnswers(deps: RuntimeDeps): Promise<void> {
  for (const lost of await answersLost(deps.db, 50)) {
    const sent = await deps.db.transaction().execute((tx) => sendByDm(deps, tx, lost));
    if (sent) await deliverOutbox(deps, { taskId: lost.taskId });
  }
}

async function sendByDm(deps: RuntimeDeps, tx: Tx, lost: AnswerLost): Promise<boolean> {
  const task = await lockTask(tx, lost.taskId);
  // Opened again since (a reply elsewhere, `/baton`): its next answer is the one to carry.
  if (task?.status !== "done" || (await answerDmQueued(tx, lost))) return false;
  const answer = await lastAnswer(tx, task.id);
  if (answer === undefined) return false;
  const why = lostThreadWhy(lost.slackError);
  const link = deps.chat.threadLink(task.channel_id, task.thread_ts);
  const intent: ChatIntent = {
    kind: "direct_message",
    user: task.requester_id,
    text: `I answered your request "${task.title}", but ${why}, so nobody could see the answer there. Here it is:\n\n${answerInDm(answer, link)}`,
  };
  const audited = {
    sent: ANSWER_SENT_BY_DM,
    refused: ANSWER_DM_REFUSED,
    data: { reason: `${why} (Slack: ${lost.slackError})`, refused_row: lost.refusedRow },
  };
  await enqueueOutbox(tx, [{ taskId: task.id, intent, audited }]);
  return true;
}

/** The answer, or its start and where whoever runs Baton reads the rest (as a cut answer's note). */
function answerInDm(answer: string, threadLink: string): string {
  const whole = answer.trim();
  const [start = ""] = answerParts(whole, DM_ANSWER_MAX);
  if (start.length >= whole.length) return whole;
  const left = whole.slice(start.length).trim().length;
  return `${start}\n\n✂️ The answer was cut here: ${left.toLocaleString("en-US")} more characters did not fit in this message. Whoever runs Baton can read all of it with \`npm run audit -- ${threadLink} --format json\`.`;
}
