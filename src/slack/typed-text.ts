import { escapeMrkdwn, isChannelId, truncate } from "./mrkdwn.ts";

/**
 * Text a person typed in Slack, shown back as they saw it. Slack sends a typed link as
 * `<https://…|label>`, a user as `<@U…>`, a channel as `<#C…|name>`, `<!here>`: stored as sent,
 * they would show as raw markup once escaped. Each becomes what the person typed, and the rest is
 * escaped, so the text can neither ping, nor link under a label it chose.
 */

// Only Slack's own markup: a person's literal "a < b > c" is no token (no @, #, ! or scheme).
const TOKEN = /<([@#!][^<>\n]*|[a-z][a-z0-9+.-]*:[^<>\s|]+(?:\|[^<>\n]*)?)>/giu;

/** Escaped mrkdwn of `text`, at most `max` code units, no token cut in two. */
export function typedText(text: string, max: number): string {
  let shown = "";
  let last = 0;
  for (const match of text.matchAll(TOKEN)) {
    shown += escapeMrkdwn(text.slice(last, match.index));
    shown += token(match[1] ?? "");
    last = match.index + match[0].length;
  }
  return truncate(shown + escapeMrkdwn(text.slice(last)), max);
}

/**
 * One token's mrkdwn. A user is "@name" text, never a mention: a title or message is shown in
 * places (a channel's digest) where a mention would notify whoever the customer named.
 */
function token(inner: string): string {
  const bar = inner.indexOf("|");
  const target = bar < 0 ? inner : inner.slice(0, bar);
  const label = bar < 0 ? "" : inner.slice(bar + 1).trim();
  const id = target.slice(1);
  switch (target[0]) {
    case "@":
      return escapeMrkdwn(`@${label || id}`);
    case "#":
      // A channel's mention notifies nobody, and shows its name to those who may see it.
      if (!label && isChannelId(id)) return `<#${id}>`;
      return escapeMrkdwn(`#${label || id}`);
    case "!":
      return escapeMrkdwn(special(id, label));
    default:
      return escapeMrkdwn(linkWords(target, label));
  }
}

/** `<!here>`, `<!subteam^S1|@leads>`, `<!date^…|fallback>`: as the person saw it. */
function special(name: string, label: string): string {
  const [kind = "", id = ""] = name.split("^");
  if (kind === "here" || kind === "channel" || kind === "everyone") return `@${kind}`;
  if (label) return label;
  return kind === "subteam" ? `@${id}` : kind;
}

/** The label the person saw, and where it leads when the label does not say so itself. */
function linkWords(url: string, label: string): string {
  const bare = url.replace(/^mailto:/i, "");
  if (!label || label === url || label === bare) return bare;
  const withoutScheme = url.replace(/^[a-z][a-z0-9+.-]*:\/\//i, "");
  return withoutScheme === label || withoutScheme === `${label}/` ? label : `${label} (${url})`;
}
