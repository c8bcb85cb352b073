import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import type { Script } from "./model-server.ts";

/** Two agents that only ever hand the work to each other, stopped by `hopLimit`. */
export function pingPongAgents(hopLimit: number) {
  return parseAgentsFile(
    `
defaults:
  entry_agent: ping
  hop_limit: ${hopLimit}
agents:
  - id: ping
    name: Ping
    icon: ":table_tennis_paddle_and_ball:"
    tools: [lookup_order]
    handoffs: [pong]
    instructions: Always hand the work to Pong.
  - id: pong
    name: Pong
    icon: ":ping_pong:"
    tools: [lookup_order]
    handoffs: [ping]
    instructions: Always hand the work to Ping.
`,
    `ping-pong-${hopLimit}.yml`,
    demoTools,
  );
}

/** Each agent passes the work straight to the other, forever. */
export const pingPongScript: Script = (_request, ctx) => ({
  toolCalls: [
    {
      name: ctx.agentId === "ping" ? "transfer_to_pong" : "transfer_to_ping",
      arguments: {
        summary: `Not mine; over to you (pass ${ctx.callIndex + 1}).`,
        needed: "Deal with it.",
        facts: { order_id: "1042" },
      },
    },
  ],
});
