import assert from "node:assert/strict";
import { type AddressInfo, createServer, type Socket } from "node:net";
import { after, before, test } from "node:test";
import { openDatabase } from "../src/db/database.ts";
import { createLogger } from "../src/log.ts";
import { RECORD_WAIT_MS, recordFailedTry } from "../src/runtime/failed-tries.ts";

// A job's failure path records the failed try. A database behind a dead network accepts the
// connection and never answers: the record gives up within RECORD_WAIT_MS, not the pool's 10 s
// connect timeout, and the log says what it could not record.

const sockets = new Set<Socket>();
const silent = createServer((socket) => {
  sockets.add(socket);
  socket.on("error", () => {});
});
let database: ReturnType<typeof openDatabase>;
before(async () => {
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const { port } = silent.address() as AddressInfo;
  database = openDatabase(`postgres://baton@127.0.0.1:${port}/baton`);
});
after(async () => {
  for (const socket of sockets) socket.destroy();
  await database.close().catch(() => {});
  silent.close();
});

test("a failed try the database does not answer for is given up on within seconds, and logged", async () => {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    level: "warn",
    destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
  });
  const started = performance.now();
  await recordFailedTry(
    { db: database.db, log },
    {
      taskId: "00000000-0000-4000-8000-000000000001",
      error: new Error("the model server answered 503: overloaded"),
      retried: true,
    },
  );
  const waited = performance.now() - started;
  assert.ok(waited < RECORD_WAIT_MS + 1_000, `the failure path waited ${Math.round(waited)} ms`);
  assert.ok(RECORD_WAIT_MS <= 2_000);
  const line = lines.find((l) => /failed try/.test(String(l.msg)));
  assert.ok(line, JSON.stringify(lines));
  assert.equal(line.taskId, "00000000-0000-4000-8000-000000000001");
  assert.deepEqual(line.attempt, {
    error: "the model server answered 503: overloaded",
    retried: true,
  });
});
