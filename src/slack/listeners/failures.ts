import type { RespondFn } from "@slack/bolt";
import { RetryAfterError, TransientError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import type { BoltApp } from "../app.ts";
import { toBatonError } from "../web-api-errors.ts";
import { failureWords } from "../words.ts";

/** Who clicked, submitted or typed the command, and where to answer them. */
interface Person {
  user: string;
  command?: boolean;
  channel?: string;
  threadTs?: string;
}

/**
 * A click, a form or a command that fails after Slack was answered would leave its person with
 * nothing but a warning icon: they are told, privately, that nothing was done and what to do.
 * Events are left alone: one that failed is not acknowledged, so Slack sends it again.
 */
export function registerFailureReplies(
  app: BoltApp,
  log: Logger,
  posting: { chat: Pick<BoltApp["client"]["chat"], "postMessage" | "postEphemeral"> },
): void {
  app.use(async (args) => {
    const { body, next } = args;
    // Commands and clicks carry a response_url; Bolt hands its sender to every middleware.
    const respond = "respond" in args ? (args.respond as RespondFn | undefined) : undefined;
    const person = personOf(body);
    if (!person) return next();
    try {
      await next();
    } catch (error) {
      log.error({ err: error, user: person.user }, "slack interaction failed");
      const text = failureWords(error);
      try {
        // A command answers through its response_url, which needs Baton in no channel.
        if (person.command && respond) {
          await respond({ response_type: "ephemeral", text });
          return;
        }
        if (!person.channel) throw new Error("no channel: a direct message instead");
        // Through `posting`, which retries nothing: one after Slack showed them would say it twice.
        await posting.chat.postEphemeral({
          channel: person.channel,
          user: person.user,
          text,
          ...(person.threadTs && { thread_ts: person.threadTs }),
        });
      } catch (thrown) {
        if (mayHaveShown(toBatonError("chat.postEphemeral", thrown))) {
          log.warn({ err: thrown }, "could not tell the person it failed");
          return;
        }
        // A modal has no channel, and a channel Baton is not in refuses ephemerals. Posted without
        // retries: one after Slack stored the DM would say it twice.
        await posting.chat
          .postMessage({ channel: person.user, text })
          .catch((e: unknown) => log.warn({ err: e }, "could not tell the person it failed"));
      }
    }
  });
}

/** A 5xx or a timeout may come after Slack showed the words; a 429 or a refusal showed nothing. */
function mayHaveShown(error: unknown): boolean {
  return error instanceof TransientError && !(error instanceof RetryAfterError);
}

function personOf(body: unknown): Person | undefined {
  const b = body as {
    type?: string;
    user?: { id?: string };
    channel?: { id?: string };
    container?: { thread_ts?: string };
    command?: string;
    user_id?: string;
    channel_id?: string;
  };
  if (typeof b.command === "string" && b.user_id)
    return { user: b.user_id, command: true, ...(b.channel_id && { channel: b.channel_id }) };
  if ((b.type === "block_actions" || b.type === "view_submission") && b.user?.id)
    return {
      user: b.user.id,
      ...(b.channel?.id && { channel: b.channel.id }),
      ...(b.container?.thread_ts && { threadTs: b.container.thread_ts }),
    };
  return undefined;
}
