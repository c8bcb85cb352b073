import type { ChatIntent, ChatSurface } from "../../src/core/ports.ts";

/** A chat surface that records what would reach Slack, for tests of the runtime without Slack. */
export function recordingChat(threadLink: ChatSurface["threadLink"]) {
  const sent: ChatIntent[] = [];
  const chat: ChatSurface = {
    async deliver(intent) {
      sent.push(intent);
      return { ts: `1736150400.${String(sent.length).padStart(6, "0")}` };
    },
    async findPosted() {
      return undefined;
    },
    async groupMembers() {
      return [];
    },
    async channelMembers() {
      return [];
    },
    threadLink,
    channelLink: (channel) => `https://slack.com/app_redirect?channel=${channel}`,
    async ownOrganization() {
      return undefined;
    },
  };
  return { chat, sent };
}
