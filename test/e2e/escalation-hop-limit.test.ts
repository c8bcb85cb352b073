import assert from "node:assert/strict";
import { test } from "node:test";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { harnessPerTest } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { waitForEscalationCard } from "../support/observe.ts";
import { ESCALATION_NOTE, sendBackSubmission, taskOfThread } from "../support/scripts-humans.ts";

const agentsFile = parseAgentsFile(
  `
defaults:
  entry_agent: cs
  hop_limit: 2
agents:
  - id: cs
    name: Customer Service
    icon: ":speech_balloon:"
    tools: [lookup_order]
    handoffs: [fulfillment]
    instructions: Hand to fulfillment.
  - id: fulfillment
    name: Fulfillment
    icon: ":package:"
    tools: [lookup_order]
    handoffs: [cs]
    instructions: Escalate.
policies:
  lanes:
    operations:
      users: [U0OPSMANAGER]
`,
  "review-hops.yml",
  new Set(demoTools.map((t) => t.name)),
);

const startHarness = harnessPerTest();

// One agent-to-agent transfer (hop 1), then an escalation (counted as hop 2). The person sends it
// back with an instruction: the agent must get to act on it, not be stopped for "ping-pong".
test("a task a person sends back is not failed at once by the hop limit", async () => {
  const h = await startHarness({
    agentsFile,
    script: scriptByAgent({
      cs: [
        {
          toolCalls: [
            {
              name: "transfer_to_fulfillment",
              arguments: { summary: "Order 1077 is lost.", needed: "Find it.", facts: {} },
            },
          ],
        },
      ],
      fulfillment: [
        {
          toolCalls: [
            { name: "escalate_to_human", arguments: { ...ESCALATION_NOTE, lane: "operations" } },
          ],
        },
        { content: "A replacement for order 1077 ships today." },
      ],
    }),
  });
  const { ts } = await h.mention("where is order 1077?");
  const escalation = await waitForEscalationCard(h);
  const waiting = await taskOfThread(h.db.db, ts);
  assert.equal(waiting?.status, "waiting_human");

  await h.click(
    sendBackSubmission({
      userId: "U0OPSMANAGER",
      escalationId: escalation.id,
      agent: { id: "fulfillment", name: "Fulfillment" },
      instruction: "Ship a replacement today.",
    }),
  );
  const settled = await h.until("the task to settle", async () => {
    const row = await taskOfThread(h.db.db, ts);
    return row && (row.status === "done" || row.status === "failed") ? row : undefined;
  });
  assert.equal(
    settled.status,
    "done",
    `the person's instruction is acted on, not dropped (failure: ${settled.failure_reason})`,
  );
  assert.equal(h.model.requestsFor("fulfillment").length, 2, "Fulfillment ran on the instruction");
});
