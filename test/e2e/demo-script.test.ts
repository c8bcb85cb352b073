import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { type AddressInfo, createServer } from "node:net";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { freePort } from "../support/harness.ts";

// `npm run demo` is the README's first command: it must keep playing all three flows to the end.
// Run here on the tests' database server, so it starts no server of its own.

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

test("npm run demo plays flows 1, 2 and 3 to their answers and prints each history", async () => {
  const { stdout } = await run(process.execPath, ["scripts/demo.ts"], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: process.env.BATON_TEST_DATABASE_URL },
    timeout: 60_000,
  });
  const flows = stdout.split(/^━━ /m).slice(1);
  assert.equal(flows.length, 3, stdout);
  const [one = "", two = "", three = ""] = flows;
  assert.match(
    one,
    /:speech_balloon: Customer Service\n {3}Good news: your order 1042 is on the way/,
  );
  assert.match(one, /hand_back +fulfillment → customer-service/);
  assert.match(two, /✅ Approved by @U0LEE/);
  assert.match(two, /Refunds in the database: 149\.00 USD for order 1077/);
  assert.match(three, /\[Take it over\] \[Send back to an agent\]/);
  assert.match(three, /take_over +C0SUPPORT → U0SAM\n.*human_return +U0SAM → customer-service/);
  assert.match(three, /we will send a replacement lamp/);
});

test("npm run demo on a DATABASE_URL that cannot be used says what to check, not a stack", async () => {
  const port = await freePort();
  const url = `postgres://baton:demo-password-1@127.0.0.1:${port}/baton`;
  const failed = await run(process.execPath, ["scripts/demo.ts"], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: url },
    timeout: 60_000,
  }).then(
    () => assert.fail("the demo started on a server that is not there"),
    (error: { code: number; stderr: string }) => error,
  );
  assert.equal(failed.code, 1);
  assert.match(
    failed.stderr,
    new RegExp(
      `^demo cannot start: Postgres at baton@127\\.0\\.0\\.1:${port}/baton cannot be used \\(connect ECONNREFUSED .*\\): check DATABASE_URL\\.\\n$`,
    ),
  );
  assert.doesNotMatch(failed.stderr, /demo-password-1/);
});

test("npm run bench on a playground port another program holds says the setting to change, not a stack", async () => {
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
  const { port } = holder.address() as AddressInfo;
  const { DATABASE_URL: _, ...env } = process.env;
  try {
    for (const script of ["scripts/bench.ts", "scripts/bench-reports.ts"]) {
      const failed = await run(process.execPath, [script], {
        cwd: ROOT,
        env: { ...env, BATON_PLAYGROUND_PG_PORT: String(port) },
        timeout: 60_000,
      }).then(
        () => assert.fail(`${script} started on a port another program holds`),
        (error: { code: number; stderr: string }) => error,
      );
      assert.equal(failed.code, 1, script);
      assert.match(
        failed.stderr,
        new RegExp(
          `^bench cannot start: the embedded Postgres cannot start: another program uses 127\\.0\\.0\\.1:${port} .*set BATON_PLAYGROUND_PG_PORT to a free port.*\\n$`,
        ),
        script,
      );
    }
  } finally {
    holder.close();
  }
});
