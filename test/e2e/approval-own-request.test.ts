import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { ChatIntent } from "../../src/core/ports.ts";
import { homeData } from "../../src/db/home.repository.ts";
import { runDigest } from "../../src/runtime/digest.ts";
import { APPROVAL_APPROVE } from "../../src/slack/views/approval-card.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForApprovalCard } from "../support/observe.ts";
import {
  answerDecision,
  blockTexts,
  cardWithButton,
  finishedTask,
  refundCall,
  refundsOf,
} from "../support/scripts-humans.ts";

// Dana asks billing a question; a billing lead replies in her thread asking for a 149 USD refund;
// billing asks for approval. The lead asked for it: they may not approve it. Another lead may.

let h: Harness;
before(async () => {
  h = await startHarness({
    script: scriptByAgent({
      billing: [
        { content: "Refunds over 100 USD need a billing lead's approval." },
        refundCall(),
        answerDecision,
      ],
    }),
  });
});
after(async () => {
  await h.close();
});

test("a billing lead who asked for the refund in the thread may not approve it; another lead may", async () => {
  const { ts } = await h.mention("billing: how do refunds work?");
  await h.until("the first answer", async () =>
    h.slack.callsTo("chat.postMessage").find((c) => String(c.args.text).includes("Refunds over")),
  );
  await h.reply(ts, "please refund order 1077, 149 USD, do it now", { user: "U0BILLINGLEAD" });
  const approval = await waitForApprovalCard(h);
  // The card names them, as the refusal below does.
  const card = cardWithButton(h.slack, ts, APPROVAL_APPROVE);
  assert.ok(card);
  assert.match(blockTexts(card).join("\n"), /asked in the thread by <@U0BILLINGLEAD>/);

  // Their App Home does not list it as waiting on them; another lead's does.
  const waiting = async (user: string, groups: string[]) =>
    (await homeData(h.db.db, user, groups)).waitingApprovals.map((a) => a.id);
  assert.deepEqual(await waiting("U0BILLINGLEAD", []), []);
  assert.deepEqual(await waiting("U0LEE", ["S0BILLINGLEADS"]), [approval.id]);
  // Nor does the digest, once the approval is stale, put it in their DM as waiting on them.
  const later = new Date(Date.now() + 5 * 3_600_000);
  const sent: ChatIntent[] = [];
  await runDigest(
    {
      ...h.baton.deps,
      agentsFile: h.agentsFile,
      clock: { now: () => later },
      chat: {
        ...h.baton.deps.chat,
        deliver: async (intent) => {
          sent.push(intent);
          return { ts: `${sent.length}.000000` };
        },
      },
      threadLink: h.baton.deps.chat.threadLink,
    },
    later,
    "test",
  );
  const channel = sent.find((i) => i.kind === "digest");
  assert.equal(channel?.kind === "digest" && channel.digest.staleApprovals.length, 1);
  const dmed = sent.flatMap((i) => (i.kind === "digest_dm" ? [i.user] : []));
  assert.ok(!dmed.includes("U0BILLINGLEAD"), `digest DMs: ${dmed.join(", ")}`);

  await h.clickCard("U0BILLINGLEAD", APPROVAL_APPROVE, approval, ts);
  const told = await h.until("the lead to be told", async () =>
    h.slack.callsTo("chat.postEphemeral").find((c) => c.args.user === "U0BILLINGLEAD"),
  );
  assert.match(String(told.args.text), /^You asked for this \(you wrote in its thread\)/);
  const still = await h.db.db
    .selectFrom("approvals")
    .select("status")
    .where("id", "=", approval.id)
    .executeTakeFirstOrThrow();
  assert.equal(still.status, "pending");
  const refused = await h.db.db
    .selectFrom("audit_events")
    .select("data")
    .where("kind", "=", "approval_refused")
    .executeTakeFirstOrThrow();
  assert.equal((refused.data as { reason?: string }).reason, "own_request");

  // U0LEE, a member of the billing leads' group, wrote nothing in the thread.
  await h.clickCard("U0LEE", APPROVAL_APPROVE, approval, ts);
  await h.until("the task to finish", () => finishedTask(h.db.db, ts), 30_000);
  assert.equal((await refundsOf(h.db.db)).length, 1);
});
