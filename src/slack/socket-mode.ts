import type { SocketModeReceiver } from "@slack/bolt";
import { within } from "../core/duration.ts";
import type { Logger } from "../log.ts";
import type { BoltApp } from "./app.ts";

/** What the Socket Mode client hands over for each envelope. */
interface SocketModeEnvelope {
  ack: (response?: unknown) => Promise<void>;
  body: Record<string, unknown>;
  retry_num?: number;
  retry_reason?: string;
}

/**
 * Bolt acknowledges an Events API envelope before its listeners run. Baton acknowledges an
 * envelope once it has been processed (the event stored and its work queued), as
 * `processBeforeResponse` does over HTTP: an envelope acknowledged is never lost, and one whose
 * processing failed is left unacknowledged, so Slack sends it again (deduplicated by event id).
 */
export function acknowledgeWhenProcessed(
  receiver: SocketModeReceiver,
  app: BoltApp,
  log: Logger,
): void {
  const envelopes: Envelopes = { inFlight: new Set(), stopping: false };
  envelopesInFlight.set(app, envelopes);
  receiver.client.removeAllListeners("slack_event");
  const handle = async (envelope: SocketModeEnvelope) => {
    let response: unknown;
    try {
      await app.processEvent({
        body: envelope.body,
        ack: async (answer?: unknown) => {
          response = answer;
        },
        ...(envelope.retry_num !== undefined && { retryNum: envelope.retry_num }),
        ...(envelope.retry_reason !== undefined && { retryReason: envelope.retry_reason }),
        customProperties: {},
      });
    } catch (error) {
      log.warn(
        { err: error },
        "a Socket Mode envelope was not processed; Slack will send it again",
      );
      return;
    }
    await envelope.ack(response).catch((error: unknown) => {
      log.warn({ err: error }, "a Socket Mode envelope could not be acknowledged");
    });
  };
  receiver.client.on("slack_event", (envelope: SocketModeEnvelope) => {
    // Stopping: left unacknowledged, Slack sends it again to a replica that is up.
    if (envelopes.stopping) return;
    // Tracked until acknowledged: a stop waits for that before it disconnects.
    void track(envelopes.inFlight, handle(envelope));
  });
}

/**
 * After the start, the Socket Mode client reconnects by itself, and a reconnect whose
 * apps.connections.open fails for good in its eyes (Slack refusing the token: revoked, the app
 * uninstalled, or Slack's own blip; or its retries used up) rejects where nobody listens: the
 * process would end as on a bug, cutting the runs under way. It is logged with what to check, and
 * tried again the client's way: its `close` schedules a reconnect after a growing wait, and a stop
 * cancels it. The first start's refusal still stops the start (startSlackApp says what to set).
 */
export function reconnectAfterRefusals(receiver: SocketModeReceiver, log: Logger): void {
  const client = receiver.client;
  const start = client.start.bind(client);
  let connected = false;
  client.start = async () => {
    try {
      const opened = await start();
      connected = true;
      return opened;
    } catch (error) {
      if (!connected) throw error;
      log.error({ err: error }, reconnectFailedWords(error));
      client.emit("close");
      return { ok: false };
    }
  };
}

function reconnectFailedWords(error: unknown): string {
  const code = (error as { data?: { error?: string } }).data?.error;
  const what =
    code === undefined
      ? "Slack could not be reached to reconnect Socket Mode"
      : `Slack refused the app-level token (${code}) at a reconnect`;
  return `${what}: no events arrive until it connects again, and it tries again; check SLACK_APP_TOKEN (an app-level token with the connections:write scope, under Basic Information > App-Level Tokens).`;
}

/** The Socket Mode envelopes each app is still processing (HTTP's server waits for its own). */
type Envelopes = { inFlight: Set<Promise<unknown>>; stopping: boolean };
const envelopesInFlight = new WeakMap<BoltApp, Envelopes>();

function track<T>(inFlight: Set<Promise<unknown>>, work: Promise<T>): Promise<T> {
  inFlight.add(work);
  void work.finally(() => inFlight.delete(work)).catch(() => undefined);
  return work;
}

/**
 * Takes no more envelopes and waits for those under way to be acknowledged, `waitMs` at most (one
 * stuck on a database gone silent, say); an app over HTTP has none.
 */
export async function finishEnvelopes(app: BoltApp, waitMs: number): Promise<void> {
  const envelopes = envelopesInFlight.get(app);
  if (!envelopes) return;
  envelopes.stopping = true;
  await within(Promise.allSettled([...envelopes.inFlight]), waitMs);
}
