import { scriptByAgent, startModelServer } from "../test/support/model-server.ts";
import { whereIsMyOrderScript } from "../test/support/scripts.ts";
import { startSlackEmulator } from "../test/support/slack-emulator.ts";

/**
 * The bench's Slack emulator and scripted model, in their own process so that the bench process
 * measures Baton alone. Plays flow 1 for orders 5000.. and tells the parent its URLs over IPC.
 */
const chains = Number(process.argv[2] ?? 33);
const merged: Record<string, Parameters<typeof scriptByAgent>[0][string]> = {};
for (let i = 0; i < chains; i++) {
  const script = whereIsMyOrderScript({ orderId: String(5000 + i), sku: `BENCH-${i}` });
  for (const [agent, replies] of Object.entries(script))
    merged[agent] = [...(merged[agent] ?? []), ...replies];
}
const slack = await startSlackEmulator();
const model = await startModelServer(scriptByAgent(merged));
process.send?.({ slackUrl: slack.url, modelUrl: model.baseURL });
// The parent asks to hear when a chain's answer (Customer Service's plain reply) reaches Slack.
process.on("message", (message: { waitFor?: string }) => {
  const threadTs = message.waitFor;
  if (!threadTs) return;
  void slack
    .waitForCall(
      "chat.postMessage",
      (c) =>
        c.args.thread_ts === threadTs &&
        c.args.username === "Customer Service" &&
        String(c.args.text).includes("on the way"),
      30_000,
    )
    .then(() => process.send?.({ answered: threadTs }));
});
process.on("disconnect", () => {
  void Promise.all([slack.close(), model.close()]).then(() => process.exit(0));
});
