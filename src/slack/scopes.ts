/**
 * The bot scopes manifest.yml asks for (a test keeps the two the same). An app made before a scope
 * was added, or a manifest pasted without reinstalling, has a token without some: Slack then refuses
 * only the calls that need them, one by one, long after the start.
 */
export const BOT_SCOPES: readonly string[] = [
  "app_mentions:read",
  "channels:history",
  "groups:history",
  "im:history",
  "mpim:history",
  "chat:write",
  "chat:write.customize",
  "chat:write.public",
  "commands",
  "usergroups:read",
  "channels:read",
  "groups:read",
  "im:read",
  "mpim:read",
  "im:write",
];

/** The scopes of BOT_SCOPES a token lacks, from what Slack says it was granted (`x-oauth-scopes`). */
export function missingScopes(granted: readonly string[]): string[] {
  const has = new Set(granted);
  return BOT_SCOPES.filter((scope) => !has.has(scope));
}

/** Said at start when the token lacks scopes, with what to do about it. */
export function missingScopesWords(missing: readonly string[]): string {
  return `the Slack app's bot token lacks ${missing.length === 1 ? "a scope" : "scopes"} manifest.yml asks for (${missing.join(", ")}): paste manifest.yml into the app's App Manifest page and reinstall the app; until then Slack refuses the calls that need ${missing.length === 1 ? "it" : "them"}`;
}
