import { within } from "../core/duration.ts";
import type { Tx } from "../db/database.ts";
import { liveEscalationCard } from "../db/escalations.repository.ts";
import { enqueueOutbox, noticeWaiting } from "../db/outbox.repository.ts";
import type { TaskRow } from "../db/schema.ts";
import { mentionOf } from "./approval-deadline.ts";
import { isDirectMessage } from "./decision-place.ts";
import type { RuntimeDeps } from "./deps.ts";
import { isAmong } from "./escalation-owners.ts";
import { post } from "./messages.ts";

/** How a reply reaches an escalation's owner: a mention of them, or a post their channel sees. */
type Page = { mention: string; channel?: never } | { channel: string; mention?: never };

/** What a page to a lane's channel opens with, by which one waiting to be sent is found. */
const CHANNEL_PAGE = "There is a new reply on the task escalated to this channel";

/**
 * Nobody who holds or owns an escalation follows the thread a reply is in, so Slack tells them of
 * nothing written there: not the person who took it over from its card (they clicked a button,
 * wrote nothing), nor the people, user groups or channel of its lane (told of it by a direct
 * message, a mention, or a post in the lane's channel). A reply pages them where the card is: the
 * task's thread, or the card's own (a direct message's task); `pageFor` says how, and whose replies
 * page nobody. Not again while an earlier page waits to be sent: it brings them to the thread, later
 * replies and all. True when a page was written; the caller delivers it once its transaction
 * commits.
 */
export async function pageHolder(
  deps: RuntimeDeps,
  tx: Tx,
  task: TaskRow,
  reply: { author: string; channel: string },
): Promise<boolean> {
  if (task.status !== "waiting_human" || task.owner_kind !== "human") return false;
  const card = await liveEscalationCard(tx, task.id);
  if (!card || (card.person ?? card.owner.id) !== task.owner_id) return false;
  const page = await pageFor(deps, card, reply.author);
  if (!page || (await noticeWaiting(tx, task.id, page.mention ?? CHANNEL_PAGE))) return false;
  const where =
    card.channel === task.channel_id
      ? { channel: task.channel_id, threadTs: task.thread_ts }
      : { channel: card.channel, threadTs: card.ts };
  await enqueueOutbox(tx, [post(task, { kind: "notice", ...heldPage(deps, card, where, page) })]);
  return true;
}

function heldPage(
  deps: RuntimeDeps,
  card: { takenOver: boolean; summary: string },
  where: { channel: string; threadTs: string },
  page: Page,
) {
  if (page.channel === undefined) {
    const whose = card.takenOver ? "you took over" : "escalated to you";
    return { ...where, text: `${page.mention} There is a new reply here on the task ${whose}.` };
  }
  // In the card's thread, the page is also sent to the channel: in a thread nobody follows, it
  // would reach nobody.
  if (where.channel === page.channel)
    return { ...where, broadcast: true, text: `${CHANNEL_PAGE}.` };
  const link = deps.chat.threadLink(where.channel, where.threadTs);
  return { channel: page.channel, text: `${CHANNEL_PAGE} (${link}): ${card.summary}` };
}

/**
 * How a reply by `author` reaches an escalation's owner, as Slack reaches each kind: a person (who
 * took it over, or the one it was given to) and a lane's people and user groups by a mention; a
 * lane's channel by a post its members see there. Undefined when it reaches nobody:
 * - the reply is the owner's own: the person's, or any one of a lane's people's or groups' members
 *   (who can take it over from the thread they write in; the group's mention would also page them
 *   about their own reply);
 * - a channel's page mentions nobody (`<!here>` is for a missed deadline: deadlines.ts), so it pages
 *   nobody about their own reply, and a member's reply counts: the requester is one when the lane is
 *   the task's own channel. The one exception: a card with no channel to go to stays in its direct
 *   message, where there is nobody else to tell.
 */
export async function pageFor(
  deps: RuntimeDeps,
  card: { person?: string | undefined; owner: { kind: string; id: string } },
  author: string,
): Promise<Page | undefined> {
  if (card.person) return card.person === author ? undefined : { mention: mentionOf(card.person) };
  if (card.owner.kind === "channel")
    return isDirectMessage(card.owner.id) ? undefined : { channel: card.owner.id };
  const ids = card.owner.id.split(",");
  if (await isOwnersReply(deps, ids, author)) return undefined;
  // Slack pings only the mentions a notice starts with (the rest is escaped).
  return { mention: ids.map(mentionOf).join(" ") };
}

/**
 * How long a reply's transaction, and Slack's acknowledgement, wait for a group's members (cached a
 * minute, so mostly not at all): a slow Slack must not hold them past Slack's 3 s.
 */
const MEMBERS_WAIT_MS = 1_000;

/**
 * Whether `author` is one of `ids` or in one of its groups. Asked of Slack inside the reply's
 * transaction, before Slack has its acknowledgement: a rate limit fails the lookup at once and a
 * slow one is not waited for, rather than hold both; a failed or late lookup pages (a member paged
 * once too often, rather than the requester's words unseen). A late answer still fills the cache.
 */
async function isOwnersReply(deps: RuntimeDeps, ids: string[], author: string): Promise<boolean> {
  try {
    const lookup = isAmong(deps, ids, author, { waitOutRateLimit: false });
    lookup.catch(() => {});
    const among = await within(lookup, MEMBERS_WAIT_MS);
    if (among === undefined) deps.log.warn("a group's members came too late: the reply pages it");
    return among ?? false;
  } catch (error) {
    deps.log.warn({ err: error }, "could not tell whether a reply is by its escalation's owners");
    return false;
  }
}
