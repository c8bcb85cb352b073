import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import { createLogger, maskSecrets, registerSecrets } from "../src/log.ts";

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
