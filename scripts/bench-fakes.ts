import { scriptByAgent, startModelServer } from "../test/support/model-server.ts";
import { startSlackEmulator } from "../test/support/slack-emulator.ts";
import { type ChainRequest, flowReplies, playChain } from "./bench-chain.ts";

/**
 * The bench's Slack (the Web API emulator and the Events API's signed deliveries) and scripted
 * model, in their own process so that the bench process measures Baton alone. Plays flow 1 for
 * orders 5000.. and tells the parent its URLs over IPC.
 */
const chains = Number(process.argv[2] ?? 33);
const slack = await startSlackEmulator();
const model = await startModelServer(scriptByAgent(flowReplies(chains)));
process.send?.({ slackUrl: slack.url, modelUrl: model.baseURL });
// Slack's view of a chain: from sending the event to Customer Service's answer reaching the Web API.
process.on("message", (chain: ChainRequest) => {
  playChain(slack, chain).then(
    (played) => process.send?.({ answered: chain.ts, ...played }),
    (error: unknown) => process.send?.({ answered: chain.ts, error: String(error) }),
  );
});
process.on("disconnect", () => {
  void Promise.all([slack.close(), model.close()]).then(() => process.exit(0));
});
