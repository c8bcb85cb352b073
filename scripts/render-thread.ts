import type { SlackEmulator } from "../test/support/slack-emulator.ts";

/** Prints a thread the way a person reads it in Slack: who speaks, what they say, the cards. */
export function renderThread(slack: SlackEmulator, channel: string, threadTs: string): string {
  const lines: string[] = [];
  for (const message of slack.messagesIn(channel, threadTs)) {
    const m = message as unknown as {
      user?: string;
      username?: string;
      icon_emoji?: string;
      text?: string;
      blocks?: unknown[];
      edited?: unknown;
    };
    const who = m.username ? `${m.icon_emoji ?? ""} ${m.username}` : `@${m.user ?? "someone"}`;
    lines.push(`── ${who}${m.edited ? " (edited)" : ""}`);
    const body = m.blocks?.length ? blockText(m.blocks) : unescapeMrkdwn(m.text ?? "");
    for (const line of body.split("\n")) lines.push(`   ${line}`);
  }
  return lines.join("\n");
}

export function blockText(blocks: unknown[]): string {
  const out: string[] = [];
  for (const block of blocks as {
    type: string;
    text?: { text: string };
    fields?: { text: string }[];
    elements?: { text?: string | { text: string }; type: string }[];
  }[]) {
    if (block.text?.text) out.push(block.text.text);
    for (const field of block.fields ?? []) out.push(`  ${field.text.replaceAll("\n", " ")}`);
    if (block.type === "context")
      out.push(
        `  ${(block.elements ?? []).map((e) => (typeof e.text === "string" ? e.text : "")).join(" ")}`,
      );
    if (block.type === "actions")
      out.push(
        `  [${(block.elements ?? []).map((e) => (typeof e.text === "object" ? e.text.text : "button")).join("] [")}]`,
      );
  }
  return unescapeMrkdwn(out.join("\n"));
}

/** As Slack shows it: dates by their fallback, mentions as @names, then the escapes undone. */
function unescapeMrkdwn(text: string): string {
  return text
    .replace(/<!date\^\d+\^[^|>]*\|([^>]*)>/g, "$1")
    .replace(/<!subteam\^([A-Z0-9]+)>/g, "@$1")
    .replace(/<@([A-Z0-9]+)>/g, "@$1")
    .replace(/<#([A-Z0-9]+)>/g, "#$1")
    .replaceAll("&lt;", "<")
    .replaceAll("&gt;", ">")
    .replaceAll("&amp;", "&");
}
