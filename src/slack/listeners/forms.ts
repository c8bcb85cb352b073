import type { webApi } from "@slack/bolt";
import { within } from "../../core/duration.ts";
import { waitingOutRateLimits } from "../../runtime/retry-after.ts";
import type { SlackHandlers } from "../handlers.ts";
import { refusedModal, rejectReasonModal } from "../views/reject-modal.ts";
import { toBatonError } from "../web-api-errors.ts";
import { decisionWords, failureWords } from "../words.ts";

/** Who clicked, and where their card is: enough to open a form for them or tell them why not. */
export interface Clicker {
  user: { id: string };
  trigger_id?: string | undefined;
  channel?: { id: string } | undefined;
  container?: { thread_ts?: string | undefined } | undefined;
}

/**
 * `postingClient`: retries nothing, and fails a 429 at once. A retry after Slack showed the words
 * would show them twice, and one after Slack opened the form would be refused (a trigger_id is
 * single-use) and tell the person it did not open. Bolt's client also sleeps a 429 out inside the
 * call, unstoppably; a trigger_id lives 3 s, so a form opened after Slack's wait would not open
 * anyway. Words to the person wait the 429 out in `waitingOut`, which a stop ends.
 */
type Client = webApi.WebClient;

/**
 * How long a form waits on its check of the clicker before it opens anyway. Slack opens a modal
 * only within 3 s of the click (trigger_id, single use), and those 3 s also hold the click's way
 * to Baton, Baton's answer and views.open's own round trip.
 */
const CHECK_WAIT_MS = 1_000;

/** What a check of the clicker says: why they may not go on, or the form to open for them. */
export interface FormCheck {
  refusal?: string | undefined;
  view?: unknown;
}

/**
 * Opens a form (Reject's reason, Send back's instruction) only for a person who may use it. The
 * check may wait on Slack (a group's or channel's members): answered in time, a person who may
 * not is told why and sees no form; later, `lateView` opens at once and turns into the refusal if
 * the check says no. The submission is checked again either way, so an open form decides nothing
 * by itself.
 */
export async function openWhenAllowed(
  handlers: SlackHandlers,
  posting: Client,
  c: Clicker,
  form: { title: "Reject" | "Send back"; check: Promise<FormCheck>; lateView: unknown },
): Promise<void> {
  const early = await within(form.check, CHECK_WAIT_MS);
  const triggerId = c.trigger_id;
  if (early) {
    if (early.refusal) tell(handlers, posting, c, early.refusal);
    else if (early.view && triggerId) openForm(handlers, posting, c, triggerId, early.view);
    return;
  }
  handlers.afterwards(`open the ${form.title} form`, async (stopping) => {
    const opened = triggerId && (await openView(posting, c, triggerId, form.lateView, stopping));
    let words: string | undefined;
    let failure: unknown;
    try {
      words = (await form.check).refusal;
    } catch (error) {
      failure = error;
      words = failureWords(error);
    }
    if (!words) return;
    if (opened)
      await posting.views
        .update({ view_id: opened.id, hash: opened.hash, view: refusedModal(form.title, words) })
        // Closed or submitted meanwhile (a submission is refused on its own): the ephemeral says it.
        .catch(() => undefined);
    await tellClicker(posting, c, words, stopping);
    if (failure) throw failure;
  });
}

/** Reject asks for a reason, only of a person who may decide (see openWhenAllowed). */
export function askRejectReason(
  handlers: SlackHandlers,
  posting: Client,
  c: Clicker,
  approvalId: string,
): Promise<void> {
  const check = Promise.all([
    handlers.checkApprovalClick({ approvalId, userId: c.user.id, decision: "rejected" }),
    handlers.approvalInfo(approvalId),
  ]).then(([refused, info]): FormCheck => {
    if (refused) return { refusal: decisionWords(refused, info) };
    return info ? { view: rejectReasonModal({ approvalId, toolName: info.toolName }) } : {};
  });
  return openWhenAllowed(handlers, posting, c, {
    title: "Reject",
    check,
    lateView: rejectReasonModal({ approvalId }),
  });
}

/** Words to the person who clicked, beside the card, once Slack has its answer. */
function tell(handlers: SlackHandlers, posting: Client, c: Clicker, words: string | undefined) {
  if (words && c.channel)
    handlers.afterwards("tell the person why they may not decide", (stopping) =>
      tellClicker(posting, c, words, stopping),
    );
}

/**
 * Opens a form once Slack has its answer. One that does not open (its trigger ran out, Slack
 * failed or asked to wait) decided nothing: the person is told so, and when to click again.
 */
function openForm(
  handlers: SlackHandlers,
  posting: Client,
  c: Clicker,
  triggerId: string,
  view: unknown,
): void {
  handlers.afterwards("open a form", (stopping) => openView(posting, c, triggerId, view, stopping));
}

async function openView(
  posting: Client,
  c: Clicker,
  triggerId: string,
  view: unknown,
  stopping: AbortSignal,
): Promise<{ id: string; hash: string } | undefined> {
  try {
    const opened = await posting.views.open({ trigger_id: triggerId, view: view as never });
    const { id, hash } = opened.view ?? {};
    return id && hash ? { id, hash } : undefined;
  } catch (error) {
    await tellClicker(posting, c, failureWords(toBatonError("views.open", error)), stopping);
    throw error;
  }
}

/**
 * A call through `posting`, its 429s waited out here. Only for words to a person about a click
 * already decided (or that decided nothing): a stop ends the wait and drops them, which loses no
 * decision and does not hold the shutdown for Slack's Retry-After.
 */
function waitingOut(method: string, call: () => Promise<unknown>, stopping: AbortSignal) {
  const send = () =>
    call().catch((error: unknown) => {
      throw toBatonError(method, error);
    });
  return waitingOutRateLimits(send, stopping);
}

async function ephemeral(
  client: { chat: { postEphemeral: (args: never) => Promise<unknown> } },
  channel: string,
  user: string,
  text: string,
  threadTs?: string,
): Promise<void> {
  await client.chat.postEphemeral({
    channel,
    user,
    text,
    ...(threadTs && { thread_ts: threadTs }),
  } as never);
}

/** Words, only the person who clicked sees, beside the card they clicked (none without a channel). */
export async function tellClicker(
  posting: Client,
  c: Clicker,
  words: string | undefined,
  stopping: AbortSignal,
) {
  const channel = c.channel?.id;
  if (words && channel)
    await waitingOut(
      "chat.postEphemeral",
      () => ephemeral(posting, channel, c.user.id, words, c.container?.thread_ts),
      stopping,
    );
}

/**
 * Words to the person in their DM with Baton: a submitted form has no card beside it to answer.
 * Through `posting`, which retries nothing: a retry after Slack stored the message would say it
 * twice, where a DM lost to Slack's trouble is only logged.
 */
export async function tellInDm(
  posting: Client,
  userId: string,
  words: string,
  stopping: AbortSignal,
) {
  await waitingOut(
    "chat.postMessage",
    () => posting.chat.postMessage({ channel: userId, text: words }),
    stopping,
  );
}
