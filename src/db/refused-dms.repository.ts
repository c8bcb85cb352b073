import { sql } from "kysely";
import type { Executor } from "./database.ts";

/**
 * Slack's answers to a DM that say the person cannot get one, whatever it says: deactivated, no
 * such user (or one the app may not see), or a bot. Slack's own words, as toBatonError keeps them at
 * the end of a refused call's message. Not `account_inactive`: Slack says it of the app's own token
 * (its workspace or user deleted), so it would hold back everyone's DMs once the token is fixed.
 */
const CANNOT_BE_SENT_A_DM = [
  "user_disabled",
  "user_not_found",
  "user_not_visible",
  "cannot_dm_bot",
];

/**
 * How long a person whose digest DM Slack refused so is left out of the digest: a week, less half a
 * day, so that a daily digest tries them again at the same firing a week on (reactivated, they are
 * reached again), and a person gone for good costs one refused DM a week, not one a day.
 */
const REFUSED_DM_PAUSE_MS = 6.5 * 86_400_000;

/** A person Slack refused a digest DM: Slack's word for why, and when that DM was written. */
export type RefusedDm = { user: string; slackError: string; writtenAt: Date };

/**
 * Those of `users` whose last digest DM Slack refused for good, as one nobody can DM (see
 * CANNOT_BE_SENT_A_DM), within the pause: no digest DM reached them since. Read from the rows not
 * sent (slack_outbox_pending_idx), then the rows written after each.
 */
export async function refusedDigestDms(
  db: Executor,
  users: readonly string[],
): Promise<Map<string, RefusedDm>> {
  if (users.length === 0) return new Map();
  const rows = await sql<{ user_id: string; slack_error: string; written_at: Date }>`
    select distinct on (o.payload -> 'intent' ->> 'user') o.payload -> 'intent' ->> 'user' as user_id,
      substring(o.error from ': ([a-z_]+)$') as slack_error, o.created_at as written_at
    from slack_outbox o
    where o.status <> 'sent' and o.status = 'dead' and o.method = 'digest_dm'
      and o.created_at > now() - ${`${REFUSED_DM_PAUSE_MS} milliseconds`}::interval
      and o.payload -> 'intent' ->> 'user' = any(${users})
      and substring(o.error from ': ([a-z_]+)$') = any(${CANNOT_BE_SENT_A_DM})
      and not exists (
        select 1 from slack_outbox s
        where s.id > o.id and s.method = 'digest_dm' and s.status = 'sent'
          and s.payload -> 'intent' ->> 'user' = o.payload -> 'intent' ->> 'user')
    order by o.payload -> 'intent' ->> 'user', o.id desc`.execute(db);
  return new Map(
    rows.rows.map((r) => [
      r.user_id,
      { user: r.user_id, slackError: r.slack_error, writtenAt: r.written_at },
    ]),
  );
}
