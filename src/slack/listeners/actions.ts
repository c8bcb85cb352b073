import type { webApi } from "@slack/bolt";
import { z } from "zod";
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
const click = z.object({
  user: z.object({ id: z.string() }),
  trigger_id: z.string().optional(),
  channel: z.object({ id: z.string() }).optional(),
  container: z
    .object({ thread_ts: z.string().optional(), channel_id: z.string().optional() })
    .passthrough()
    .optional(),
  actions: z.array(z.object({ value: z.string().max(2000) })).min(1),
});
const submission = z.object({
  user: z.object({ id: z.string() }),
  view: z.object({
    private_metadata: z.string(),
    state: z.object({ values: z.record(z.string(), z.record(z.string(), z.any())) }),
  }),
});

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

  app.view(REJECT_REASON_CALLBACK, async ({ ack, body }) => {
    const s = submission.parse(body);
    const reason = z
      .string()
      .trim()
      .min(1)
      .max(1000)
      .safeParse(s.view.state.values[REJECT_REASON_BLOCK]?.[REJECT_REASON_ACTION]?.value);
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

  app.action(ESCALATION_TAKE_OVER, async ({ ack, body }) => {
    await ack();
    const c = click.parse(body);
    const result = await handlers.decideEscalation({
      escalationId: uuid.parse(c.actions[0]?.value),
      userId: c.user.id,
      choice: { kind: "take_over" },
    });
    const words = escalationWords(result, c.user.id);
    if (words)
      handlers.afterwards("tell the person who clicked take over", (stopping) =>
        tellClicker(posting, c, words, stopping),
      );
  });

  app.action(ESCALATION_SEND_BACK, async ({ ack, body }) => {
    await ack();
    const c = click.parse(body);
    const triggerId = c.trigger_id;
    if (!triggerId) return;
    const escalationId = uuid.parse(c.actions[0]?.value);
    // Refuse (or say it is handled) rather than ask for an instruction that could not be used.
    const view = sendBackModal({ escalationId, agents: handlers.agentsForSendBack() });
    const check = handlers
      .checkEscalationClick({ escalationId, userId: c.user.id })
      .then((result): FormCheck => {
        const refusal = escalationWords(result, c.user.id);
        return refusal ? { refusal } : { view };
      });
    await openWhenAllowed(handlers, posting, c, {
      title: "Send back",
      check,
      lateView: view,
    });
  });

  app.view(SEND_BACK_CALLBACK, async ({ ack, body }) => {
    const s = submission.parse(body);
    const values = s.view.state.values;
    const agentId = z
      .string()
      .safeParse(values[SEND_BACK_AGENT_BLOCK]?.[SEND_BACK_AGENT_ACTION]?.selected_option?.value);
    const instruction = z
      .string()
      .trim()
      .min(1)
      .max(1000)
      .safeParse(values[SEND_BACK_INSTRUCTION_BLOCK]?.[SEND_BACK_INSTRUCTION_ACTION]?.value);
    if (!agentId.success || !instruction.success) {
      await ack({
        response_action: "errors",
        errors: agentId.success
          ? { [SEND_BACK_INSTRUCTION_BLOCK]: "Tell the agent what to do next." }
          : { [SEND_BACK_AGENT_BLOCK]: "Pick the agent to send it to." },
      });
      return;
    }
    await ack();
    let text: string | undefined;
    try {
      const result = await handlers.decideEscalation({
        escalationId: uuid.parse(s.view.private_metadata),
        userId: s.user.id,
        choice: { kind: "send_back", agentId: agentId.data, instruction: instruction.data },
      });
      const words = escalationWords(result, s.user.id);
      if (words) text = `${words} Nothing changed.`;
    } catch (error) {
      if (!isBatonError(error)) throw error;
      text = `Nothing changed: ${error.message}.`;
    }
    if (text) {
      const words = text;
      handlers.afterwards("tell the person who sent it back", (stopping) =>
        tellInDm(posting, s.user.id, words, stopping),
      );
    }
  });

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

  // Link buttons still send a click; acknowledging it is all there is to do.
  for (const linkButton of [HOME_OPEN_LINK, DIGEST_OPEN_LINK]) {
    app.action(linkButton, async ({ ack }) => {
      await ack();
    });
  }
}
