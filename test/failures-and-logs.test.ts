import assert from "node:assert/strict";
import { type AddressInfo, createServer, type Socket } from "node:net";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { isConnectionLost, openDatabase } from "../src/db/database.ts";
import { NotFoundError } from "../src/errors.ts";
import { createLogger, maskSecrets, registerSecrets } from "../src/log.ts";
import { RECORD_WAIT_MS, recordFailedTry } from "../src/runtime/failed-tries.ts";
import { localRuns } from "../src/runtime/local-runs.ts";
import { failureWords } from "../src/slack/words.ts";

// Failures and what the log keeps of them: a database that does not answer, words for a
// failed click, local runs that fail, secrets masked. One suite per former test file; log last,
// as the secrets it registers are masked in this process from then on.

describe("failed-try-silent-database", async () => {
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
});

describe("failure-words", async () => {
  const coded = (message: string, code: string) => Object.assign(new Error(message), { code });

  test("a database that is away is told apart from a wrong statement or a bug", () => {
    for (const lost of [
      coded("connect ECONNREFUSED 127.0.0.1:5432", "ECONNREFUSED"),
      coded("read ECONNRESET", "ECONNRESET"),
      coded("terminating connection due to administrator command", "57P01"),
      coded("the database system is starting up", "57P03"),
      coded("connection failure", "08006"),
      new Error("Connection terminated unexpectedly"),
      new Error("Client has encountered a connection error and is not queryable"),
      new Error("timeout exceeded when trying to connect"),
    ])
      assert.equal(isConnectionLost(lost), true, lost.message);
    for (const other of [
      coded("duplicate key value violates unique constraint", "23505"),
      coded("canceling statement due to statement timeout", "57014"),
      new TypeError("Cannot read properties of undefined (reading 'id')"),
      undefined,
      "a string",
    ])
      assert.equal(isConnectionLost(other), false, String(other));
  });

  test("a person whose click failed is told that nothing was done, and what to do", () => {
    assert.equal(
      failureWords(new NotFoundError("that approval no longer exists")),
      "Nothing was done: that approval no longer exists.",
    );
    assert.match(
      failureWords(coded("read ECONNRESET", "ECONNRESET")),
      /could not reach its database/,
    );
    const bug = failureWords(new TypeError("x is undefined"));
    assert.match(bug, /^Something went wrong on Baton's side, so nothing was done/);
    assert.doesNotMatch(bug, /undefined/, "a bug's own words stay in the log");
  });
});

describe("local-runs", async () => {
  const log = createLogger({ level: "silent" });
  const tick = () => new Promise((r) => setImmediate(r));

  test("a reserved run starts after the current request is answered, and frees its slot when it ends", async () => {
    const runs = localRuns(1, log);
    assert.equal(runs.reserve("t1"), true);
    let started = false;
    let finish: () => void = () => {};
    runs.start("t1", async () => {
      started = true;
      await new Promise<void>((resolve) => (finish = resolve));
    });
    assert.equal(started, false, "not in the request's own turn of the event loop");
    await tick();
    assert.equal(started, true);
    assert.equal(runs.reserve("t2"), false, "the one slot is busy");
    finish();
    await runs.drain();
    assert.equal(runs.reserve("t2"), true, "a finished run frees its slot");
  });

  test("once stopping, no slot is kept: a message a job accepts meanwhile goes through the queue", async () => {
    const runs = localRuns(2, log);
    runs.reserve("t1");
    let finish: () => void = () => {};
    runs.start("t1", () => new Promise<void>((resolve) => (finish = resolve)));
    await tick();
    const stopped = runs.stop(10_000);
    assert.equal(runs.reserve("t2"), false, "a free slot, but the process is stopping");
    finish();
    await stopped;
    assert.equal(runs.reserve("t3"), false);
  });

  test("a stop waits a while for a run that does not end (a slow model), then goes on, logged", async () => {
    const lines: Record<string, unknown>[] = [];
    const heard = createLogger({
      destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
    });
    const runs = localRuns(1, heard);
    runs.reserve("t1");
    runs.start("t1", () => new Promise<void>(() => {}));
    await tick();
    // Unbounded, this stop would never settle (the test fails with its promise still pending).
    // 20 ms left of the stop's deadline (8 s in all, shared with the other waits).
    await runs.stop(20);
    const warning = lines.find((l) => l.level === 40);
    assert.deepEqual(warning?.tasks, ["t1"]);
    assert.match(String(warning?.msg), /resumes from its last step/);
  });

  test("a run that fails is logged and frees its slot; nothing is left unhandled", async () => {
    const runs = localRuns(1, log);
    runs.reserve("t1");
    runs.start("t1", async () => {
      throw new Error("the model is down");
    });
    await runs.drain();
    assert.equal(runs.reserve("t2"), true);
  });

  test("past its capacity, a new task goes through the queue; a slot given back is free again", () => {
    const runs = localRuns(1, log);
    assert.equal(runs.reserve("t1"), true);
    assert.equal(runs.reserve("t2"), false, "every slot busy");
    runs.giveBack("t1");
    assert.equal(runs.reserve("t2"), true);
    assert.equal(localRuns(0, log).reserve("t3"), false, "no workers: nothing runs here");
  });

  test("drain waits for every run under way", async () => {
    const runs = localRuns(2, log);
    const finished: string[] = [];
    for (const id of ["t1", "t2"]) {
      runs.reserve(id);
      runs.start(id, async () => {
        await new Promise((r) => setTimeout(r, 20));
        finished.push(id);
      });
    }
    await runs.drain();
    assert.deepEqual(finished.sort(), ["t1", "t2"]);
  });
});

describe("log", async () => {
  function capture() {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    return { log: createLogger({ level: "debug", destination }), lines };
  }

  test("logs never carry tokens, keys or passwords: by field name and by shape", () => {
    const { log, lines } = capture();
    log.info(
      { config: { botToken: "xoxb-123-456-abc", apiKey: "sk-live-1234567890abcdef" } },
      "starting",
    );
    log.info({ headers: { authorization: "Bearer xoxb-999" } }, "request");
    log.warn(
      "could not connect to postgres://baton:hunter2@db:5432/baton with xoxb-1-2-3 and xapp-1-A1-2",
    );
    log.error(
      { err: new Error("auth failed for sk-proj-abcdefghijklmnopqrstuvwx") },
      "model call failed",
    );
    const text = lines.join("");
    for (const secret of [
      "xoxb-123",
      "sk-live",
      "xoxb-999",
      "hunter2",
      "xoxb-1-2-3",
      "xapp-1-A1-2",
      "sk-proj-abc",
    ]) {
      assert.ok(!text.includes(secret), `${secret} leaked into the logs`);
    }
    assert.match(text, /\[redacted\]/);
    assert.match(
      text,
      /postgres:\/\/baton:\[redacted\]@db:5432/,
      "the connection string keeps its shape",
    );
  });

  test("maskSecrets leaves ordinary text alone", () => {
    assert.equal(maskSecrets("order 1042 shipped; ask @lee"), "order 1042 shipped; ask @lee");
  });

  test("an error reported as a plain object (as pg-boss reports a worker's) keeps its message and code", () => {
    const { log, lines } = capture();
    const cause = Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" });
    log.error(
      { err: { ...cause, message: cause.message, stack: cause.stack, queue: "task.run" } },
      "job queue error",
    );
    log.error({ err: { reason: "pool ended for postgres://baton:hunter2@db/baton" } }, "odd");
    const [first, second] = lines.map((l) => JSON.parse(l) as { err: Record<string, unknown> });
    assert.equal(first?.err.message, "read ECONNRESET");
    assert.equal(first?.err.code, "ECONNRESET");
    assert.equal(first?.err.queue, "task.run");
    assert.match(String(second?.err.message), /pool ended/);
    assert.doesNotMatch(lines.join(""), /hunter2|\[object Object\]/);
  });

  // Connection strings as DATABASE_URL may hold them: none of the password may show.
  for (const [input, secret] of [
    ["connect postgres://baton:p@ss@db.internal:5432/baton failed", "p@ss"],
    ["postgresql://:s3cret@db/x", "s3cret"],
    ["postgres://baton@db/x?sslmode=require&password=s3cret", "s3cret"],
    ["POSTGRES://baton:s3cret@db/x", "s3cret"],
  ] as const) {
    test(`maskSecrets hides the password in ${input}`, () => {
      const masked = maskSecrets(input);
      assert.ok(!masked.includes(secret), masked);
      assert.match(masked, /\[redacted\]/);
    });
  }

  // A gateway's or Azure's key has no shape to know it by: its value, registered at startup, is.
  test("registered secret values are masked whatever their shape, in logs and wherever maskSecrets is used", () => {
    registerSecrets(["gw-2f9c41d7e0", "gw-2f9c41d7e0-long", "short", undefined, ""]);
    assert.equal(
      maskSecrets("gateway refused gw-2f9c41d7e0-long, then gw-2f9c41d7e0 (ask short)"),
      "gateway refused [redacted], then [redacted] (ask short)",
      "the longer value is masked whole; a value under 8 characters is left alone",
    );
    const { log, lines } = capture();
    log.warn("model call refused for gw-2f9c41d7e0");
    log.error({ err: new Error("400: key gw-2f9c41d7e0 is invalid") }, "model call failed");
    const text = lines.join("");
    assert.ok(!text.includes("gw-2f9c41d7e0"), text);
    assert.match(text, /refused for \[redacted\]/);
    assert.match(text, /key \[redacted\] is invalid/);
  });

  test("a key's shape is not matched inside a word: SKUs and slugs stay readable", () => {
    assert.equal(
      maskSecrets("sku desk-lamp-walnut-large; ask-the-warehouse-team-first"),
      "sku desk-lamp-walnut-large; ask-the-warehouse-team-first",
    );
    assert.equal(maskSecrets("key sk-proj-abcdefghijklmnopqrstuvwx"), "key [redacted]");
  });

  test("a registered password that is also part of a shape does not unmask what the shape hides", () => {
    // Docker's default: the password "postgres" is in every connection string's scheme too.
    registerSecrets(["postgres"]);
    const line = maskSecrets("pg-boss: postgres://baton:hunter2pw@replica:5432/x");
    assert.ok(!line.includes("hunter2pw"), line);
  });

  test("a secret in any field of a log line is masked, not only in messages and errors", () => {
    const { log, lines } = capture();
    registerSecrets(["gateway-key-5f1e2d3c"]);
    log.warn(
      {
        url: "postgres://baton:s3cr3t-pw@db:5432/baton",
        tool: { reply: "echo of gateway-key-5f1e2d3c", tries: 2 },
        said: ["xoxb-77-88-zz"],
      },
      "tool failed",
    );
    const text = lines.join("");
    for (const secret of ["s3cr3t-pw", "gateway-key-5f1e2d3c", "xoxb-77-88-zz"])
      assert.ok(!text.includes(secret), `${secret} leaked: ${text}`);
    assert.match(text, /"tries":2/);
  });
});
