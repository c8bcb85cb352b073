import type { SlackEmulator } from "../test/support/slack-emulator.ts";
import { appMentionEvent, deliverEvent } from "../test/support/slack-signing.ts";

/** A chain to play: Slack sends the mention to the app and waits for the answer in its thread. */
export interface ChainRequest {
  endpoint: string;
  secret: string;
  channel: string;
  ts: string;
  text: string;
}

/**
 * Slack's view of a chain, timed in Slack's process (the benches' fakes): from sending the signed
 * mention to Customer Service's answer reaching the Web API. The event's HTTP client is Slack's,
 * so the measured process pays only for receiving it.
 */
export async function playChain(slack: SlackEmulator, chain: ChainRequest): Promise<number> {
  const answer = slack.waitForCall(
    "chat.postMessage",
    (c) =>
      c.args.thread_ts === chain.ts &&
      c.args.username === "Customer Service" &&
      String(c.args.text).includes("on the way"),
    30_000,
  );
  answer.catch(() => {});
  const started = performance.now();
  const event = appMentionEvent({
    user: "U0BENCH",
    channel: chain.channel,
    text: chain.text,
    ts: chain.ts,
  });
  const delivery = await deliverEvent(chain.endpoint, chain.secret, event, {});
  if (delivery.status !== 200) throw new Error(`the event was answered ${delivery.status}`);
  await answer;
  return performance.now() - started;
}
