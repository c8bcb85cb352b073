import { type ChainRequest, flowReplies, playChain } from "../../scripts/bench-chain.ts";
import { modelCounter, scriptByAgent, startModelServer } from "../../test/support/model-server.ts";
import { startSlackEmulator } from "../../test/support/slack-emulator.ts";

/**
 * The comparison's Slack emulator and scripted model, in their own process as in scripts/bench-fakes.ts,
 * so the measured process is the framework alone. The model server routes replies by the request's
 * prompt_cache_key (the agent's id), which the frameworks set per agent. Besides answering "has this
 * chain's answer reached Slack?", it counts each chain's Slack posts and the characters it sent to
 * the model, the way Baton counts model_calls.request_chars (`messageChars`), here rather than in
 * the measured process.
 */
const chains = Number(process.argv[2] ?? 33);
const slack = await startSlackEmulator();
const model = await startModelServer(scriptByAgent(flowReplies(chains)));
process.send?.({ slackUrl: slack.url, modelUrl: model.baseURL });

const countModel = modelCounter(model.requests);
let posted = 0;
process.on("message", (message: ChainRequest | { chars: true }) => {
  if ("chars" in message) {
    // The parent asks after each chain, when that chain's calls are all in: the chars since the last ask.
    const posts = slack.callsTo("chat.postMessage").length - posted;
    posted += posts;
    process.send?.({ ...countModel(), posts });
    return;
  }
  // Slack's view of the chain, timed here as scripts/bench-fakes.ts times Baton's.
  const chain = message;
  playChain(slack, chain).then(
    (played) => process.send?.({ answered: chain.ts, ...played }),
    (error: unknown) => process.send?.({ answered: chain.ts, error: String(error) }),
  );
});
process.on("disconnect", () => {
  void Promise.all([slack.close(), model.close()]).then(() => process.exit(0));
});
