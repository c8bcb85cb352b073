import assert from "node:assert/strict";
import { CHANNEL, type Harness, SIGNING_SECRET } from "./harness.ts";
import { deliverCommand } from "./slack-signing.ts";

/** What Bolt's respond() posted back for a `/baton` command. */
export interface CommandAnswer {
  text: string;
  /** The answer's blocks, as JSON. */
  blocks: string;
  ephemeral: boolean;
}

/** Runs `/baton <text>` as `user` over signed HTTP and returns what Baton answered. */
export async function runBaton(
  h: Harness,
  text: string,
  options: { user?: string; channel?: string } = {},
): Promise<CommandAnswer> {
  const before = h.slack.callsTo("response_url").length;
  const res = await deliverCommand(h.endpoint, SIGNING_SECRET, {
    command: "/baton",
    text,
    user_id: options.user ?? "U0OPS",
    channel_id: options.channel ?? CHANNEL,
    response_url: h.slack.responseUrl,
  });
  assert.equal(res.status, 200);
  const reply = await h.until(`the answer to /baton ${text}`, async () =>
    h.slack.callsTo("response_url").at(before),
  );
  return {
    text: String(reply.args.text),
    blocks: JSON.stringify(reply.args.blocks ?? []),
    ephemeral: reply.args.response_type === "ephemeral",
  };
}
