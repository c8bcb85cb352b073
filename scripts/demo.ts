import { ownershipHistory } from "../src/db/ledger.repository.ts";
import { scriptByAgent } from "../test/support/model-server.ts";
import { whereIsMyOrderScript } from "../test/support/scripts.ts";
import {
  escalationScript,
  orderReturnScript,
  sendBackSubmission,
  settledTask,
} from "../test/support/scripts-humans.ts";
import {
  appMentionEvent,
  blockActionsPayload,
  deliverEvent,
  deliverInteraction,
} from "../test/support/slack-signing.ts";
import { exitOnSetting, SIGNING_SECRET, startPlayground } from "./playground.ts";
import { blockText, renderThread } from "./render-thread.ts";

/**
 * `npm run demo`: flow 1 ("Where's my order?"), flow 2 (a return whose refund needs a billing lead)
 * and flow 3 (a case for a person, who takes it over, then hands it back to an agent) against the
 * Slack emulator and a scripted model, on the embedded database.
 */
const CHANNEL = "C0SUPPORT";
const REQUESTER = "U0DANA";

const flows = [whereIsMyOrderScript(), orderReturnScript(), escalationScript()];
// Each agent plays its part of flow 1, then of flow 2, then of flow 3.
const script = scriptByAgent(
  Object.fromEntries(
    [...new Set(flows.flatMap((flow) => Object.keys(flow)))].map((agent) => [
      agent,
      flows.flatMap((flow) => flow[agent] ?? []),
    ]),
  ),
);

const play = await startPlayground({ script, database: "baton_demo" }).catch(exitOnSetting("demo"));
const db = play.baton.deps.db;

async function until<T>(check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error("the demo timed out");
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function ask(text: string) {
  const message = play.slack.addMessage({
    channel: CHANNEL,
    user: REQUESTER,
    text: `<@U0BATONBOT> ${text}`,
  });
  await deliverEvent(
    play.endpoint,
    SIGNING_SECRET,
    appMentionEvent({
      user: REQUESTER,
      channel: CHANNEL,
      text: message.text ?? "",
      ts: message.ts,
    }),
    {},
  );
  return message.ts;
}

async function taskIn(threadTs: string, status: string) {
  return until(() => settledTask(db, threadTs, status));
}

async function printHistory(taskId: string) {
  console.log("\nOwnership history:");
  for (const h of await ownershipHistory(db, taskId)) {
    console.log(
      `  ${h.created_at.toISOString().slice(11, 23)}  ${h.kind.padEnd(17)} ${h.from_id} → ${h.to_id}`,
    );
  }
}

try {
  console.log("━━ Flow 1: “@Baton where is order 1042?” ━━\n");
  const t1 = await ask("where is order 1042?");
  const task1 = await taskIn(t1, "done");
  console.log(renderThread(play.slack, CHANNEL, t1));
  await printHistory(task1.id);

  console.log("\n━━ Flow 2: “@Baton I want to return order 1077” ━━\n");
  const t2 = await ask("I want to return order 1077, the chair doesn't fit my desk");
  await taskIn(t2, "waiting_human");
  const approval = await until(() =>
    db.selectFrom("approvals").selectAll().where("card_ts", "is not", null).executeTakeFirst(),
  );
  const card = play.slack.messagesIn(CHANNEL, t2).find((m) => m.ts === approval.card_ts);
  console.log("The approval card, before the decision:\n");
  console.log(blockText((card?.blocks as unknown[]) ?? []));
  console.log("\n… @lee (a billing lead) clicks Approve …\n");
  await deliverInteraction(
    play.endpoint,
    SIGNING_SECRET,
    blockActionsPayload({
      userId: "U0LEE",
      actionId: "approval_approve",
      value: approval.id,
      channel: CHANNEL,
      messageTs: approval.card_ts ?? "",
      threadTs: t2,
    }),
  );
  const task2 = await taskIn(t2, "done");
  console.log(renderThread(play.slack, CHANNEL, t2));
  await printHistory(task2.id);
  const refunds = await db.selectFrom("refunds").selectAll().execute();
  console.log(
    `\nRefunds in the database: ${refunds.map((r) => `${r.amount_usd} USD for order ${r.order_id}`).join(", ")}`,
  );

  console.log("\n━━ Flow 3: “@Baton the lamp from order 1077 caught fire” ━━\n");
  const t3 = await ask("the lamp from order 1077 caught fire, I want compensation");
  await taskIn(t3, "waiting_human");
  const escalation = await until(() =>
    db.selectFrom("escalations").selectAll().where("card_ts", "is not", null).executeTakeFirst(),
  );
  const escalationCard = play.slack
    .messagesIn(CHANNEL, t3)
    .find((m) => m.ts === escalation.card_ts);
  console.log("The escalation card, in the thread and for the support lane:\n");
  console.log(blockText((escalationCard?.blocks as unknown[]) ?? []));
  console.log("\n… @sam (support) clicks Take it over, calls Dana, then hands it back …\n");
  const click = (actionId: string) =>
    deliverInteraction(
      play.endpoint,
      SIGNING_SECRET,
      blockActionsPayload({
        userId: "U0SAM",
        actionId,
        value: escalation.id,
        channel: CHANNEL,
        messageTs: escalation.card_ts ?? "",
        threadTs: t3,
      }),
    );
  await click("escalation_take_over");
  await until(async () => {
    const task = await settledTask(db, t3, "waiting_human");
    return task?.owner_id === "U0SAM" ? task : undefined;
  });
  await click("escalation_send_back");
  await deliverInteraction(
    play.endpoint,
    SIGNING_SECRET,
    sendBackSubmission({
      userId: "U0SAM",
      escalationId: escalation.id,
      agent: { id: "customer-service", name: "Customer Service" },
      instruction:
        "I called Dana and logged the incident: send a replacement lamp and refund 149 USD.",
    }),
  );
  const task3 = await taskIn(t3, "done");
  console.log(renderThread(play.slack, CHANNEL, t3));
  await printHistory(task3.id);
} finally {
  await play.close();
}
