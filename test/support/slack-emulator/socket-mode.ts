// Socket Mode, as Slack documents it: apps.connections.open (with the app-level token) hands out a
// WebSocket URL; Slack says hello on it, then sends each event, interaction or command as an
// envelope, and the app acknowledges an envelope by sending back its envelope_id (with a payload
// when it answers an interaction). An envelope not acknowledged is sent again, with retry_attempt.
import { randomBytes } from "node:crypto";
import type { Server } from "node:http";
import { type WebSocket, WebSocketServer } from "ws";

export type EnvelopeType = "events_api" | "interactive" | "slash_commands";
/** What the app sent back for an envelope. */
export type EnvelopeAck = { envelope_id: string; payload?: unknown };

// Slack pings its Socket Mode connections; the client reconnects when the pings stop.
const PING_EVERY_MS = 10_000;

export function socketModeServer(server: Server, appId: string) {
  const wss = new WebSocketServer({ noServer: true });
  const sockets = new Set<WebSocket>();
  const acks = new Map<string, (ack: EnvelopeAck) => void>();
  let onConnect: (() => void)[] = [];
  server.on("upgrade", (req, socket, head) => {
    if (!req.url?.startsWith("/link/")) {
      socket.destroy();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws);
      const ping = setInterval(() => ws.ping(), PING_EVERY_MS);
      ws.on("close", () => {
        clearInterval(ping);
        sockets.delete(ws);
      });
      ws.on("message", (data) => {
        const ack = JSON.parse(String(data)) as EnvelopeAck;
        if (ack.envelope_id) acks.get(ack.envelope_id)?.(ack);
      });
      ws.send(
        JSON.stringify({
          type: "hello",
          num_connections: sockets.size,
          debug_info: { host: "applink-emulator", approximate_connection_time: 18060 },
          connection_info: { app_id: appId },
        }),
      );
      for (const resolve of onConnect) resolve();
      onConnect = [];
    });
  });
  return {
    /** What apps.connections.open answers: a fresh ticket on this server's /link/. */
    linkUrl(origin: string): string {
      return `${origin.replace(/^http/, "ws")}/link/?ticket=${randomBytes(8).toString("hex")}`;
    },
    /** Resolves once an app holds an open connection (it has been said hello to). */
    connected(): Promise<void> {
      if (sockets.size > 0) return Promise.resolve();
      return new Promise((resolve) => onConnect.push(resolve));
    },
    /**
     * Sends an envelope to the connected app; resolves with its acknowledgement, or with undefined
     * when none came within `timeoutMs` (Slack's three seconds, by default).
     */
    send(
      type: EnvelopeType,
      payload: unknown,
      options: { retryAttempt?: number; retryReason?: string; timeoutMs?: number } = {},
    ): Promise<EnvelopeAck | undefined> {
      const socket = [...sockets][0];
      if (!socket) throw new Error("no app is connected in Socket Mode");
      const envelopeId = randomBytes(16).toString("hex");
      const acked = new Promise<EnvelopeAck | undefined>((resolve) => {
        const timer = setTimeout(() => {
          acks.delete(envelopeId);
          resolve(undefined);
        }, options.timeoutMs ?? 3000);
        acks.set(envelopeId, (ack) => {
          clearTimeout(timer);
          acks.delete(envelopeId);
          resolve(ack);
        });
      });
      socket.send(
        JSON.stringify({
          envelope_id: envelopeId,
          type,
          payload,
          accepts_response_payload: type !== "events_api",
          ...(type === "events_api" && {
            retry_attempt: options.retryAttempt ?? 0,
            retry_reason: options.retryReason ?? "",
          }),
        }),
      );
      return acked;
    },
    /** The connection is cut, as a network drop does; the app may connect again. */
    drop(): void {
      for (const socket of sockets) socket.terminate();
    },
    close(): void {
      for (const socket of sockets) socket.terminate();
      wss.close();
    },
  };
}
