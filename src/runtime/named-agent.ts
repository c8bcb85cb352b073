// Who a message is for: the agent it names first ("@Baton billing: …"), or the channel's entry
// agent; and a mention that names one and asks nothing.
import type { RuntimeDeps } from "./deps.ts";

/** "@Baton billing: refund order 1077" goes to billing; otherwise the channel's entry agent. */
export function chooseAgent(deps: RuntimeDeps, message: { channel: string; text: string }) {
  return (
    namedAgent(deps, message.text) ?? {
      agent: deps.agents.entryFor(message.channel),
      text: message.text.trim(),
    }
  );
}

/** Nothing to read: spaces and invisible marks (a zero-width space) alone. */
export const isBlank = (text: string) => text.replace(/[\s\p{Cf}]+/gu, "") === "";

/**
 * The words a message begins with, naming an agent ("billing: …", "Billing, …"), and the rest.
 * A typo of a name counts only before a colon, the form people address an agent in: "shopping, …"
 * is more likely a word than Shipping.
 */
function nameAndRest(deps: RuntimeDeps, text: string) {
  const named = /^\s*([A-Za-z][\w -]{0,40}?)\s*([:,])\s*(.*)$/s.exec(text);
  if (!named?.[1]) return undefined;
  const agent = deps.agents.named(named[1], { typos: named[2] === ":" });
  return agent && { agent, rest: named[3] ?? "" };
}

/** The agent a message names first ("billing: …"), and the rest of its words. */
export function namedAgent(deps: RuntimeDeps, text: string) {
  const named = nameAndRest(deps, text);
  return named && !isBlank(named.rest)
    ? { agent: named.agent, text: named.rest.trim() }
    : undefined;
}

/** "billing:", or "billing" alone: an agent named, and nothing asked of it. */
export function namesOnly(deps: RuntimeDeps, text: string): boolean {
  const named = nameAndRest(deps, text);
  if (named) return isBlank(named.rest);
  return deps.agents.named(text.trim()) !== undefined;
}
