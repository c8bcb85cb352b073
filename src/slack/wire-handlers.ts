import { findApproval } from "../db/humans.repository.ts";
import { acceptMessage } from "../runtime/accept.ts";
import { decideApproval } from "../runtime/approvals.ts";
import { taskStatus } from "../runtime/commands.ts";
import type { RuntimeDeps } from "../runtime/deps.ts";
import { decideEscalation } from "../runtime/escalations.ts";
import type { SlackHandlers } from "./handlers.ts";
import { appHome } from "./views/app-home.ts";
import { HELP_TEXT } from "./words.ts";

/** Binds the Slack listeners to the core use cases. */
export function createSlackHandlers(
  deps: RuntimeDeps,
  botUserId: () => Promise<string>,
): SlackHandlers {
  return {
    botUserId,
    acceptMessage: async (message) => {
      const outcome = await acceptMessage(deps, message);
      deps.metrics.slackEvents.inc({ outcome });
      return outcome;
    },
    decideApproval: (input) => decideApproval(deps, input),
    async approvalInfo(approvalId) {
      const row = await findApproval(deps.db, approvalId);
      return row && { toolName: row.tool, approvers: row.approvers, status: row.status };
    },
    decideEscalation: (input) => decideEscalation(deps, input),
    agentsForSendBack: () => deps.agents.all().map((a) => ({ id: a.id, name: a.name })),
    async command({ text }) {
      const [verb = "help", ...rest] = text.trim().split(/\s+/);
      const ref = rest.join(" ");
      switch (verb.toLowerCase()) {
        case "status":
          return {
            text: ref
              ? await taskStatus(deps, ref)
              : "Usage: `/baton status <task, order or thread link>`",
          };
        default:
          return { text: HELP_TEXT };
      }
    },
    async auditPage() {
      return { text: "The audit trail is not available yet." };
    },
    async homeView(userId) {
      return appHome({ userId, openTasks: [], waitingApprovals: [], recentDecisions: [] });
    },
  };
}
