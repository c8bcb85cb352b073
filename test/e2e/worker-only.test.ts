import assert from "node:assert/strict";
import { test } from "node:test";
import { insertOrderTask } from "../support/db.ts";
import { harnessPerTest } from "../support/harness.ts";
import { scriptByAgent } from "../support/model-server.ts";
import { whereIsMyOrderScript } from "../support/scripts.ts";
import { finishedTask } from "../support/scripts-humans.ts";

// BATON_HTTP=0 makes a worker-only replica: it takes no Slack events, over HTTP or Socket Mode,
// and works the tasks other replicas accepted.

const startHarness = harnessPerTest();

for (const socketMode of [false, true])
  test(`a worker-only replica${socketMode ? " with an app-level token" : ""} takes no events and works queued tasks`, async () => {
    const h = await startHarness({
      script: scriptByAgent(whereIsMyOrderScript()),
      socketMode,
      workerOnly: true,
    });
    assert.equal(h.baton.port, undefined);
    assert.deepEqual(h.slack.callsTo("apps.connections.open"), [], "no Socket Mode connection");
    await assert.rejects(fetch(h.endpoint, { method: "POST", body: "{}" }), "no HTTP port");

    // Another replica accepted this task and queued it.
    const task = await insertOrderTask(h.db.db, "1736000000.000100");
    await h.baton.deps.queue.enqueue(h.db.db, task.id);
    await h.until("the task to finish", () => finishedTask(h.db.db, task.thread_ts), 30_000);
  });
