import assert from "node:assert/strict";
import { test } from "node:test";
import { ESCALATION_TAKE_OVER } from "../../src/slack/views/escalation-card.ts";
import { harnessPerTest } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForEscalationCard } from "../support/observe.ts";
import { ESCALATION_NOTE, taskOfThread } from "../support/scripts-humans.ts";
import { runBaton } from "../support/slash-command.ts";

const startHarness = harnessPerTest();

// `/baton done <order>` judged the order's newest task: a later question about the order, answered
// by an agent in another thread, hid the task the person held, and they were told nothing matched.

const LEAD = "U0SUPPORTLEAD";

test("/baton done <order> closes the order's task the person holds, as /baton status finds it", async () => {
  const lookup = { toolCalls: [{ name: "lookup_order", arguments: { order_id: "1077" } }] };
  const h = await startHarness({
    script: scriptByAgent({
      "customer-service": [
        lookup,
        { toolCalls: [{ name: "escalate_to_human", arguments: ESCALATION_NOTE }] },
        lookup,
        { content: "Order 1077 was delivered on Monday." },
      ],
    }),
  });
  // T1: the safety case, escalated to #support, taken over by its lead.
  const first = await h.mention("the lamp from order 1077 caught fire, I want compensation");
  const escalation = await waitForEscalationCard(h);
  await h.clickCard(LEAD, ESCALATION_TAKE_OVER, escalation, first.ts);
  const t1 = await h.until("the lead to hold T1", async () => {
    const t = await taskOfThread(h.db.db, first.ts);
    return t?.owner_id === LEAD ? t : undefined;
  });
  // T2: someone else later asks about the same order in another thread; the agent answers.
  const second = await h.mention("when was order 1077 delivered?", { user: "U0COLLEAGUE" });
  await h.until("T2 answered", async () => {
    const t = await taskOfThread(h.db.db, second.ts);
    return t?.status === "done" ? t : undefined;
  });

  // From the support lane's channel, where the lead works T1.
  const status = await runBaton(h, "status 1077", { user: LEAD, channel: "C0SUPPORT" });
  assert.match(status.text, new RegExp(t1.id));
  const done = await runBaton(h, "done 1077", { user: LEAD, channel: "C0SUPPORT" });
  const after = await taskOfThread(h.db.db, first.ts);
  assert.match(done.text, /^Done: /);
  assert.equal(after?.status, "done", `the lead's task T1 stays open; Baton said: ${done.text}`);
});
