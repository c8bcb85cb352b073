import { type AddressInfo, connect, createServer, type Socket } from "node:net";

/**
 * A TCP proxy in front of the Postgres server `serverUrl` names, so a test can take the database
 * away from Baton as a restart or a network partition does: `cut()` resets every connection and
 * refuses new ones until `restore()`. Only connections through it (`urlOf`) are affected; the
 * test's own stay up.
 */
export async function startPostgresProxy(serverUrl: string) {
  // The test server listens on 127.0.0.1 too, whether its URL names a socket folder or not.
  const target = { host: "127.0.0.1", port: Number(new URL(serverUrl).port || 5432) };
  const open = new Set<Socket>();
  let down = false;
  let refused = 0;
  const server = createServer((client) => {
    if (down) {
      refused++;
      client.resetAndDestroy();
      return;
    }
    const upstream = connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      open.add(socket);
      socket.on("close", () => open.delete(socket));
      socket.on("error", () => {});
    }
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end);
    upstream.on("close", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    /** A database URL on the same server, through the proxy. */
    urlOf(url: string): string {
      const parsed = new URL(url);
      parsed.searchParams.delete("host");
      parsed.hostname = "127.0.0.1";
      parsed.port = String(port);
      return parsed.toString();
    },
    /** Connections refused while cut: proof that something tried to reach the database. */
    get refused() {
      return refused;
    },
    cut() {
      down = true;
      for (const socket of open) socket.resetAndDestroy();
    },
    restore() {
      down = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
