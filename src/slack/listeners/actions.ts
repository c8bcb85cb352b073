import type { webApi } from "@slack/bolt";
import { z } from "zod";
import { cleanText } from "../../core/text.ts";
import { isBatonError } from "../../errors.ts";
import type { BoltApp } from "../app.ts";
import type { SlackHandlers } from "../handlers.ts";
import { HOME_OPEN_LINK } from "../views/app-home.ts";
import { APPROVAL_APPROVE, APPROVAL_REJECT } from "../views/approval-card.ts";
import { AUDIT_PAGE } from "../views/audit-story.ts";
import { DIGEST_OPEN_LINK } from "../views/digest.ts";
import { ESCALATION_SEND_BACK, ESCALATION_TAKE_OVER } from "../views/escalation-card.ts";
import {
  REJECT_REASON_ACTION,
  REJECT_REASON_BLOCK,
  REJECT_REASON_CALLBACK,
  SEND_BACK_AGENT_ACTION,
  SEND_BACK_AGENT_BLOCK,
  SEND_BACK_CALLBACK,
  SEND_BACK_INSTRUCTION_ACTION,
  SEND_BACK_INSTRUCTION_BLOCK,
  sendBackModal,
} from "../views/reject-modal.ts";
import { decisionWords, escalationWords } from "../words.ts";
import {
  askRejectReason,
  type FormCheck,
  openWhenAllowed,
  tellClicker,
  tellInDm,
} from "./forms.ts";

const uuid = z.string().uuid();
/**
 * The person who clicked or submitted; `team_id` is their own team (Slack Connect: another
 * organization's, for its people in a shared channel), or in an Enterprise organization its id.
 */
const person = z.object({ id: z.string(), team_id: z.string().optional() });
const click = z.object({
  user: person,
  trigger_id: z.string().optional(),
  channel: z.object({ id: z.string() }).optional(),
  container: z
    .object({ thread_ts: z.string().optional(), channel_id: z.string().optional() })
    .passthrough()
    .optional(),
  actions: z.array(z.object({ value: z.string().max(2000) })).min(1),
});
const submission = z.object({
  user: person,
  view: z.object({
    private_metadata: z.string(),
    state: z.object({ values: z.record(z.string(), z.record(z.string(), z.any())) }),
  }),
});
type Submission = z.infer<typeof submission>;
/**
 * A reject reason or a send-back instruction: the agent reads it. Cleaned as a message's text is
 * (events.ts): Postgres refuses a NUL, and a lone surrogate in jsonb, so stored as typed either
 * would fail the decision every time it is tried.
 */
const typedWords = z.string().overwrite(cleanText).trim().min(1).max(1000);

/**
 * Card buttons and modals. Values carry only a row id; everything else is loaded and checked.
 * Forms open, and words to the person go, through `posting`, which retries nothing and fails a 429
 * at once (see forms).
 */
export function registerActionListeners(
  app: BoltApp,
  handlers: SlackHandlers,
  posting: webApi.WebClient,
): void {
  registerApprovalButtons(app, handlers, posting);
  registerRejectReasonForm(app, handlers, posting);
  registerEscalationButtons(app, handlers, posting);
  registerSendBackForm(app, handlers, posting);
  registerAuditPager(app, handlers);
  registerLinkButtons(app);
}

function registerApprovalButtons(
  app: BoltApp,
  handlers: SlackHandlers,
  posting: webApi.WebClient,
): void {
  app.action(APPROVAL_APPROVE, async ({ ack, body }) => {
    await ack();
    const c = click.parse(body);
    const approvalId = uuid.parse(c.actions[0]?.value);
    const outcome = await handlers.decideApproval({
      approvalId,
      userId: c.user.id,
      decision: "approved",
    });
    handlers.afterwards("tell the approver", async (stopping) => {
      const words = decisionWords(outcome, await handlers.approvalInfo(approvalId));
      await tellClicker(posting, c, words, stopping);
    });
  });

  app.action(APPROVAL_REJECT, async ({ ack, body }) => {
    await ack();
    const c = click.parse(body);
    await askRejectReason(handlers, posting, c, uuid.parse(c.actions[0]?.value));
  });
}

function registerRejectReasonForm(
  app: BoltApp,
  handlers: SlackHandlers,
  posting: webApi.WebClient,
): void {
  app.view(REJECT_REASON_CALLBACK, async ({ ack, body }) => {
    const s = submission.parse(body);
    const reason = typedWords.safeParse(
      s.view.state.values[REJECT_REASON_BLOCK]?.[REJECT_REASON_ACTION]?.value,
    );
    if (!reason.success) {
      await ack({
        response_action: "errors",
        errors: { [REJECT_REASON_BLOCK]: "Say why, in a few words: the agent uses it." },
      });
      return;
    }
    await ack();
    const approvalId = uuid.parse(s.view.private_metadata);
    const outcome = await handlers.decideApproval({
      approvalId,
      userId: s.user.id,
      decision: "rejected",
      reason: reason.data,
    });
    handlers.afterwards("tell the person who rejected", async (stopping) => {
      const words = decisionWords(outcome, await handlers.approvalInfo(approvalId));
      if (words) await tellInDm(posting, s.user.id, words, stopping);
    });
  });
}

function registerEscalationButtons(
  app: BoltApp,
  handlers: SlackHandlers,
  posting: webApi.WebClient,
): void {
  app.action(ESCALATION_TAKE_OVER, async ({ ack, body }) => {
    await ack();
    const c = click.parse(body);
    const result = await handlers.decideEscalation({
      escalationId: uuid.parse(c.actions[0]?.value),
      userId: c.user.id,
      teamId: c.user.team_id,
      choice: { kind: "take_over" },
    });
    const words = escalationWords(result);
    if (words)
      handlers.afterwards("tell the person who clicked take over", (stopping) =>
        tellClicker(posting, c, words, stopping),
      );
  });

  app.action(ESCALATION_SEND_BACK, async ({ ack, body }) => {
    await ack();
    const c = click.parse(body);
    if (!c.trigger_id) return;
    const escalationId = uuid.parse(c.actions[0]?.value);
    // Refuse (or say it is handled) rather than ask for an instruction that could not be used.
    const view = sendBackModal({ escalationId, agents: handlers.agentsForSendBack() });
    const check = handlers
      .checkEscalationClick({ escalationId, userId: c.user.id, teamId: c.user.team_id })
      .then((result): FormCheck => {
        const refusal = escalationWords(result);
        return refusal ? { refusal } : { view };
      });
    await openWhenAllowed(handlers, posting, c, { title: "Send back", check, lateView: view });
  });
}

function registerSendBackForm(
  app: BoltApp,
  handlers: SlackHandlers,
  posting: webApi.WebClient,
): void {
  app.view(SEND_BACK_CALLBACK, async ({ ack, body }) => {
    const s = submission.parse(body);
    const form = sendBackForm(s.view.state.values);
    if ("errors" in form) {
      await ack({ response_action: "errors", errors: form.errors });
      return;
    }
    await ack();
    const words = await sendBack(handlers, s, form);
    if (words)
      handlers.afterwards("tell the person who sent it back", (stopping) =>
        tellInDm(posting, s.user.id, words, stopping),
      );
  });
}

/** The agent picked and the instruction typed, or what to fix, by the block that needs it. */
function sendBackForm(
  values: Submission["view"]["state"]["values"],
): { agentId: string; instruction: string } | { errors: Record<string, string> } {
  const agentId = z
    .string()
    .safeParse(values[SEND_BACK_AGENT_BLOCK]?.[SEND_BACK_AGENT_ACTION]?.selected_option?.value);
  if (!agentId.success)
    return { errors: { [SEND_BACK_AGENT_BLOCK]: "Pick the agent to send it to." } };
  const instruction = typedWords.safeParse(
    values[SEND_BACK_INSTRUCTION_BLOCK]?.[SEND_BACK_INSTRUCTION_ACTION]?.value,
  );
  if (!instruction.success)
    return { errors: { [SEND_BACK_INSTRUCTION_BLOCK]: "Tell the agent what to do next." } };
  return { agentId: agentId.data, instruction: instruction.data };
}

/** Words for the person who sent it back, only when nothing changed (a refusal says why). */
async function sendBack(
  handlers: SlackHandlers,
  s: Submission,
  form: { agentId: string; instruction: string },
): Promise<string | undefined> {
  try {
    const result = await handlers.decideEscalation({
      escalationId: uuid.parse(s.view.private_metadata),
      userId: s.user.id,
      teamId: s.user.team_id,
      choice: { kind: "send_back", ...form },
    });
    const words = escalationWords(result);
    return words ? `${words} Nothing changed.` : undefined;
  } catch (error) {
    if (!isBatonError(error)) throw error;
    return `Nothing changed: ${error.message}.`;
  }
}

function registerAuditPager(app: BoltApp, handlers: SlackHandlers): void {
  app.action(AUDIT_PAGE, async ({ ack, body, respond }) => {
    await ack();
    const c = click.parse(body);
    const [taskId, page] = (c.actions[0]?.value ?? "").split(":");
    const parsedPage = z.coerce.number().int().min(1).safeParse(page);
    if (!uuid.safeParse(taskId).success || !parsedPage.success) return;
    const answer = await handlers.auditPage({
      taskId: taskId as string,
      page: parsedPage.data,
      userId: c.user.id,
      channelId: c.channel?.id ?? c.container?.channel_id,
    });
    handlers.afterwards("show the audit page", () =>
      respond({
        replace_original: true,
        response_type: "ephemeral",
        text: answer.text,
        ...(answer.blocks && { blocks: answer.blocks as never }),
      }),
    );
  });
}

/** Link buttons still send a click; acknowledging it is all there is to do. */
function registerLinkButtons(app: BoltApp): void {
  for (const linkButton of [HOME_OPEN_LINK, DIGEST_OPEN_LINK]) {
    app.action(linkButton, async ({ ack }) => {
      await ack();
    });
  }
}
