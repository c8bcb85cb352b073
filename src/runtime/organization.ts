// Whether a person is of the organization that installed Baton. A Slack Connect channel is shared
// with other organizations, so its members include their people (a customer who asked, say):
// a decision that rests on channel membership is for Baton's own organization's people.
import type { RuntimeDeps } from "./deps.ts";

/**
 * Whether a person whose own team Slack named (`user.team_id` in a click) is of another
 * organization: neither Baton's workspace nor, in an Enterprise organization, Baton's organization
 * (Slack names the organization, `E…`, as the team of its people there).
 *
 * Unknown on either side (a payload without the person's team; auth.test not answered yet, or
 * failed) is not taken for outside: that is no sign of an outsider, and refusing on it would lock
 * the organization's own people out of their lanes while Slack says less or cannot be reached.
 */
export async function fromOutside(
  deps: Pick<RuntimeDeps, "chat">,
  teamId: string | undefined,
): Promise<boolean> {
  if (!teamId) return false;
  const own = await deps.chat.ownOrganization();
  if (!own) return false;
  return teamId !== own.teamId && teamId !== own.enterpriseId;
}
