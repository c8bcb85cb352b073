import { webApi } from "@slack/bolt";
import type { ChatSurface } from "../../src/core/ports.ts";
import type { Logger } from "../../src/log.ts";
import { createSlackChatSurface } from "../../src/slack/chat-surface.ts";
import type { SlackEmulator } from "./slack-emulator.ts";

/** The emulated workspace's URL, as its auth.test answers. */
export const WORKSPACE_URL = "https://baton-test.slack.com/";

/** Baton's Slack chat surface on the emulator, through a real client that does not retry. */
export function emulatedChat(slack: SlackEmulator, log: Logger): ChatSurface {
  const client = new webApi.WebClient("xoxb-test", {
    slackApiUrl: slack.url,
    retryConfig: { retries: 0 },
    logLevel: webApi.LogLevel.ERROR,
  });
  return createSlackChatSurface(client, { log, workspaceUrl: WORKSPACE_URL });
}
