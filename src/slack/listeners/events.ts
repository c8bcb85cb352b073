import { z } from "zod";
import type { BoltApp } from "../app.ts";
import type { SlackHandlers } from "../handlers.ts";

const messageEvent = z.object({
  type: z.string(),
  user: z.string().optional(),
  bot_id: z.string().optional(),
  subtype: z.string().optional(),
  text: z.string().default(""),
  ts: z.string(),
  thread_ts: z.string().optional(),
  channel: z.string(),
});
const envelope = z.object({ event_id: z.string() });

// Subtypes that are a person writing; edits, joins and bot posts are not work.
const HUMAN_SUBTYPES = new Set([undefined, "thread_broadcast", "file_share"]);

/** Events: a mention starts or continues a task; a reply in a task's thread continues it. */
export function registerEventListeners(app: BoltApp, handlers: SlackHandlers): void {
  app.event("app_mention", async ({ event, body }) => {
    await accept(handlers, event, body, true);
  });
  app.event("message", async ({ event, body }) => {
    await accept(handlers, event, body, false);
  });
  app.event("app_home_opened", async ({ event, client }) => {
    const parsed = z.object({ user: z.string(), tab: z.string().optional() }).safeParse(event);
    if (!parsed.success || (parsed.data.tab && parsed.data.tab !== "home")) return;
    const view = await handlers.homeView(parsed.data.user);
    await client.views.publish({ user_id: parsed.data.user, view: view as never });
  });
}

async function accept(
  handlers: SlackHandlers,
  rawEvent: unknown,
  rawBody: unknown,
  isMention: boolean,
): Promise<void> {
  const event = messageEvent.safeParse(rawEvent);
  const body = envelope.safeParse(rawBody);
  if (!event.success || !body.success) return;
  const e = event.data;
  // The bot never answers itself or other bots: that way lies a loop.
  if (!e.user || e.bot_id || !HUMAN_SUBTYPES.has(e.subtype)) return;
  const botUserId = await handlers.botUserId();
  if (e.user === botUserId) return;
  const botMention = `<@${botUserId}>`;
  const mentioned = isMention || e.text.includes(botMention);
  // A top-level message that does not mention Baton is not for Baton: no row is written for it.
  if (!mentioned && !e.thread_ts) return;
  await handlers.acceptMessage({
    eventId: body.data.event_id,
    channel: e.channel,
    ts: e.ts,
    threadTs: e.thread_ts,
    user: e.user,
    text: e.text.replaceAll(botMention, "").trim(),
    mentioned,
  });
}
