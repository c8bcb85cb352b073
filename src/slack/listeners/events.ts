import type { webApi } from "@slack/bolt";
import { z } from "zod";
import { cleanText } from "../../core/text.ts";
import { isBatonError, RetryAfterError, ThreadReadPaused } from "../../errors.ts";
import type { AcceptOutcome } from "../../runtime/accept.ts";
import type { ThreadCatchUp } from "../../runtime/deps.ts";
import { rateLimitWaitMs } from "../../runtime/retry-after.ts";
import type { BoltApp } from "../app.ts";
import type { SlackHandlers } from "../handlers.ts";
import { unescapeSlack } from "../mrkdwn.ts";
import { toBatonError } from "../web-api-errors.ts";

const messageEvent = z.object({
  type: z.string(),
  user: z.string().optional(),
  bot_id: z.string().optional(),
  subtype: z.string().optional(),
  text: z.string().default(""),
  ts: z.string(),
  thread_ts: z.string().optional(),
  /** In a reply: who wrote the thread's first message. */
  parent_user_id: z.string().optional(),
  channel: z.string(),
  channel_type: z.string().optional(),
  files: z.array(z.object({ name: z.string().optional() })).optional(),
});
const envelope = z.object({ event_id: z.string() });

// Subtypes that are a person writing; joins and bot posts are not work (edits: see acceptEdit).
const HUMAN_SUBTYPES = new Set([undefined, "thread_broadcast", "file_share"]);

/** Slack's `message_changed`: the message as it is now, and as it was. */
const editEvent = z.object({
  subtype: z.literal("message_changed"),
  channel: z.string(),
  message: messageEvent.omit({ type: true, channel: true }).extend({
    // Set only when someone edited the text: an unfurl or a thread's reply count changes none.
    edited: z.object({ ts: z.string() }).optional(),
  }),
  previous_message: z.object({ text: z.string().default("") }).optional(),
});

/**
 * Events: a mention starts or continues a task; a reply in a task's thread continues it. Slack
 * waits for the answer to an event until it is processed (see `processBeforeResponse`), and sends
 * it again after 3 s: Slack is called through `noWait`, which fails a 429 at once, never waits it out.
 */
export function registerEventListeners(
  app: BoltApp,
  handlers: SlackHandlers,
  noWait: webApi.WebClient,
): void {
  app.event("app_mention", async ({ event, body, context, logger }) => {
    const outcome = await accept(handlers, event, body, true, context.retryNum);
    const mention = messageEvent.safeParse(event);
    // A mention that reached Baton late (Slack retried it, or was slow) may have replies in its
    // thread that came first and were passed over, there being no task yet: read them now. A retry
    // of a mention that started its task and failed after does the same; the replies read already
    // are duplicates.
    // Socket Mode numbers a first delivery 0 (`retry_attempt`); over HTTP it has no number.
    const late =
      (context.retryNum ?? 0) > 0 ||
      (mention.success && Date.now() - tsMillis(mention.data.ts) > LATE_MS);
    if (!mention.success || !late || (outcome !== "started" && outcome !== "duplicate")) return;
    const { channel, ts, thread_ts } = mention.data;
    await catchUpLateMention(
      handlers,
      noWait,
      { channel, threadTs: thread_ts ?? ts, after: ts },
      logger,
    );
  });
  app.event("message", async ({ event, body, context }) => {
    if (event.subtype === "message_changed")
      await acceptEdit(handlers, event, body, context.retryNum);
    else await accept(handlers, event, body, false, context.retryNum);
  });
  app.event("app_home_opened", async ({ event, logger }) => {
    const parsed = z.object({ user: z.string(), tab: z.string().optional() }).safeParse(event);
    if (!parsed.success || (parsed.data.tab && parsed.data.tab !== "home")) return;
    const view = await handlers.homeView(parsed.data.user);
    try {
      await noWait.views.publish({ user_id: parsed.data.user, view: view as never });
    } catch (thrown) {
      const error = toBatonError("views.publish", thrown);
      if (!(error instanceof RetryAfterError)) throw thrown;
      // The tab keeps the Home published last, and opening it again publishes anew: a publish
      // deferred past Slack's wait could land after the person left, on a method already throttled.
      logger.warn(`App Home not refreshed for ${parsed.data.user}: ${error.message}`);
    }
  });
}

async function accept(
  handlers: SlackHandlers,
  rawEvent: unknown,
  rawBody: unknown,
  isMention: boolean,
  retryNum?: number,
): Promise<AcceptOutcome | undefined> {
  const event = messageEvent.safeParse(rawEvent);
  const body = envelope.safeParse(rawBody);
  if (!event.success || !body.success) return undefined;
  const e = event.data;
  // The bot never answers itself or other bots: that way lies a loop.
  if (!e.user || e.bot_id || !HUMAN_SUBTYPES.has(e.subtype)) return undefined;
  const botUserId = await handlers.botUserId();
  if (e.user === botUserId) return undefined;
  const botMention = `<@${botUserId}>`;
  // A direct message is written to Baton: it needs no mention.
  const named = isMention || e.text.includes(botMention);
  const mentioned = named || e.channel_type === "im";
  // A top-level message that does not mention Baton is not for Baton: no row is written for it.
  if (!mentioned && !e.thread_ts) return undefined;
  const text = messageText(e, botMention);
  // Nothing to read (a message of blocks alone): no turn for the model to guess at. A mention with
  // nothing after it goes on: the person is told to write their question.
  if (text === "" && !named) return undefined;
  return handlers.acceptMessage({
    eventId: body.data.event_id,
    channel: e.channel,
    ts: e.ts,
    threadTs: e.thread_ts,
    user: e.user,
    text,
    mentioned,
    retryNum,
    // A reply under a direct message Baton sent (a page, a digest, a card) asks it nothing new.
    // In a channel, a reply that does not name Baton is people's own talk, ignored below.
    ...(!named &&
      e.channel_type === "im" &&
      e.thread_ts !== e.ts &&
      e.parent_user_id === botUserId && { underBotPost: true }),
  });
}

/**
 * A person's edit of their message: read in a task's thread as a reply that corrects it (once per
 * edit, by the edit's ts). Baton's own edits (its cards, updated in place) and other bots' are not.
 */
async function acceptEdit(
  handlers: SlackHandlers,
  rawEvent: unknown,
  rawBody: unknown,
  retryNum: number | undefined,
): Promise<AcceptOutcome | undefined> {
  const event = editEvent.safeParse(rawEvent);
  const body = envelope.safeParse(rawBody);
  if (!event.success || !body.success) return undefined;
  const { channel, message: e, previous_message: before } = event.data;
  if (!e.user || e.bot_id || !e.edited || !HUMAN_SUBTYPES.has(e.subtype)) return undefined;
  // A file added or removed, the text as it was: nothing new to read.
  if (before && before.text === e.text) return undefined;
  const botUserId = await handlers.botUserId();
  if (e.user === botUserId) return undefined;
  const botMention = `<@${botUserId}>`;
  const text = messageText(e, botMention);
  if (text === "") return undefined;
  return handlers.acceptMessage({
    eventId: body.data.event_id,
    channel,
    ts: e.ts,
    threadTs: e.thread_ts,
    user: e.user,
    text,
    mentioned: e.text.includes(botMention),
    retryNum,
    editTs: e.edited.ts,
  });
}

/**
 * What the person wrote, for the agent. The bot's mention is a real token; an escaped "&lt;@U…&gt;"
 * the person typed is decoded after. Cleaned as a model's text is: Postgres refuses a NUL or half
 * an emoji, and would refuse the message on every redelivery. A file shared (often with no
 * comment) is named, as the agent cannot open it.
 */
function messageText(
  e: Pick<z.infer<typeof messageEvent>, "text" | "files">,
  botMention: string,
): string {
  const text = cleanText(unescapeSlack(e.text.replaceAll(botMention, ""))).trim();
  const files = (e.files ?? []).map((f) => `[shared a file: ${cleanText(f.name ?? "unnamed")}]`);
  return [text, ...files].filter((line) => line !== "").join("\n");
}

/** A mention this long after it was written may have replies that reached Baton before it. */
const LATE_MS = 2_000;
const REPLIES_PAGE = 200;
const MAX_PAGES = 5;

/** Slack's ts is the Unix time it took the message, in seconds with microseconds. */
function tsMillis(ts: string): number {
  return Number(ts.split(".")[0]) * 1000;
}

/** Whether Slack ts `a` is later than `b`, exactly (past what a double holds). */
function laterTs(a: string, b: string): boolean {
  const [aSec = "", aMicro = ""] = a.split(".");
  const [bSec = "", bMicro = ""] = b.split(".");
  if (aSec !== bSec) return Number(aSec) > Number(bSec);
  return aMicro.padEnd(6, "0") > bMicro.padEnd(6, "0");
}

type Warner = { warn(message: string): void };

/**
 * A late mention's catch-up, while Slack waits for the event's answer (the mention is stored and
 * its run queued). Slack asking to wait is not waited out here: the read is queued for after the
 * Retry-After, on the job queue, so a restart meanwhile loses nothing. Slack unreachable or failing
 * is thrown: the 500 makes it send the mention again, and the catch-up with it.
 */
async function catchUpLateMention(
  handlers: SlackHandlers,
  client: webApi.WebClient,
  thread: ThreadCatchUp,
  log: Warner,
): Promise<void> {
  try {
    await catchUpThread(handlers, client, thread, log);
  } catch (error) {
    if (!(error instanceof ThreadReadPaused)) throw error;
    await handlers.catchUpLater(error.rest, rateLimitWaitMs(error));
  }
}

/**
 * Accepts the replies written in a mention's thread after it, as their own events would have been:
 * each is stored once (its message key makes a redelivery, or a second catch-up, a duplicate). Also
 * the catch-up job's work. A read to the thread's end is recorded, so that another catch-up of
 * the mention failing after it tells nobody the replies were lost, and one due after it asks Slack
 * nothing (the replies since came by their own events). Slack refusing (the thread
 * deleted, a scope missing) would refuse every retry too: it is logged. Other failures are thrown
 * (Slack's as Baton errors, a 429 as ThreadReadPaused, with what is left to read).
 */
export async function catchUpThread(
  handlers: SlackHandlers,
  client: webApi.WebClient,
  thread: ThreadCatchUp,
  log: Warner,
): Promise<void> {
  if (await handlers.threadWasRead(thread)) return;
  try {
    await acceptReplies(handlers, client, thread);
  } catch (error) {
    if (!isBatonError(error) || error.retriable) throw error;
    log.warn(`could not read the replies before a late mention: ${error.message}`);
    return;
  }
  await handlers.threadRead(thread);
}

async function acceptReplies(
  handlers: SlackHandlers,
  client: webApi.WebClient,
  thread: ThreadCatchUp,
): Promise<void> {
  const { channel, threadTs, after, readTo } = thread;
  // Slack's pages of a thread are short (15 replies for most apps) and its calls about one a
  // minute: a read paused by a 429 goes on from its last reply, not from the mention again.
  const from = readTo ?? after;
  let read = from;
  let cursor: string | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const answer = await client.conversations
      .replies({
        channel,
        ts: threadTs,
        oldest: from,
        limit: REPLIES_PAGE,
        ...(cursor && { cursor }),
      })
      .catch((error: unknown) => {
        const failed = toBatonError("conversations.replies", error);
        // What this read accepted before Slack paused it is not read again.
        throw failed instanceof RetryAfterError
          ? new ThreadReadPaused(failed, read === from ? thread : { ...thread, readTo: read })
          : failed;
      });
    for (const reply of answer.messages ?? []) {
      if (!reply.ts || !laterTs(reply.ts, from)) continue;
      const event = { ...reply, type: "message", channel, thread_ts: threadTs };
      await accept(handlers, event, { event_id: `catchup:${channel}:${reply.ts}` }, false);
      read = reply.ts;
    }
    cursor = answer.response_metadata?.next_cursor || undefined;
    if (!cursor) return;
  }
}
