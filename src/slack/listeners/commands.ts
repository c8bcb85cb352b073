import { z } from "zod";
import { cleanText } from "../../core/text.ts";
import type { BoltApp } from "../app.ts";
import type { SlackHandlers } from "../handlers.ts";

const commandBody = z.object({
  user_id: z.string(),
  channel_id: z.string(),
  // Cleaned as a message's text is (events.ts): Postgres refuses a NUL in a reference looked up.
  text: z.string().overwrite(cleanText).default(""),
});

/** /baton status | audit | who | help. Answers are ephemeral: an audit is for the asker. */
export function registerCommandListeners(app: BoltApp, handlers: SlackHandlers): void {
  app.command("/baton", async ({ ack, command, respond }) => {
    await ack();
    const c = commandBody.parse(command);
    const answer = await handlers.command({
      userId: c.user_id,
      channelId: c.channel_id,
      text: c.text,
    });
    handlers.afterwards("answer the command", () =>
      respond({
        response_type: "ephemeral",
        text: answer.text,
        ...(answer.blocks && { blocks: answer.blocks as never }),
      }),
    );
  });
}
