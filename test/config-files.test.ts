import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { Ajv, type ValidateFunction } from "ajv";
import addFormats from "ajv-formats";
import { parse } from "yaml";
import { loadAgentsFile, parseAgentsFile } from "../src/config/agents-file.ts";
import {
  loadConfig,
  loadDatabaseConfig,
  misspelledEnv,
  redactedConfigSummary,
  secretValues,
} from "../src/config/env.ts";
import { demoTools } from "../src/domain/demo-tools.ts";
import { ConfigError } from "../src/errors.ts";

// What an operator writes: the environment, agents.yml, and Slack's manifest.yml.
// One suite per former test file.

describe("config", async () => {
  const REQUIRED = {
    SLACK_BOT_TOKEN: "xoxb-bot-secret-1",
    SLACK_SIGNING_SECRET: "signing-secret-2",
    OPENAI_API_KEY: "sk-openai-secret-3",
  };

  /** The ConfigError's message, asserting that one was thrown. */
  function configErrorOf(fn: () => unknown): string {
    try {
      fn();
    } catch (error) {
      assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
      return error.message;
    }
    assert.fail("expected a ConfigError");
  }

  describe("loadConfig", () => {
    it("applies defaults to the required variables alone", () => {
      const config = loadConfig(REQUIRED);
      assert.deepEqual(config, {
        slack: {
          botToken: "xoxb-bot-secret-1",
          signingSecret: "signing-secret-2",
          appToken: undefined,
          apiUrl: undefined,
          socketMode: false,
          timeoutMs: 30_000,
        },
        openai: { apiKey: "sk-openai-secret-3", baseUrl: undefined, timeoutMs: 60_000 },
        database: { url: undefined, dataDir: ".baton", embeddedPort: 54329 },
        http: { port: 3000, enabled: true },
        agentsFile: "agents.yml",
        logLevel: "info",
        workers: 4,
        jobRetries: 5,
      });
    });

    it("reads every optional variable and returns a deeply frozen config", () => {
      const config = loadConfig({
        ...REQUIRED,
        SLACK_APP_TOKEN: "xapp-1-secret",
        SLACK_API_URL: "http://localhost:4000/api",
        OPENAI_BASE_URL: "http://localhost:11434/v1",
        OPENAI_TIMEOUT_SECONDS: "300",
        SLACK_TIMEOUT_SECONDS: "5",
        DATABASE_URL: "postgresql://baton:pw@db:5432/baton",
        BATON_DATA_DIR: "/var/lib/baton",
        BATON_EMBEDDED_PG_PORT: "5544",
        PORT: "8080",
        BATON_AGENTS_FILE: "/etc/baton/agents.yml",
        LOG_LEVEL: "debug",
        BATON_WORKERS: "16",
        BATON_HTTP: "0",
        BATON_JOB_RETRIES: "0",
      });
      assert.equal(config.slack.socketMode, true);
      assert.equal(config.slack.apiUrl, "http://localhost:4000/api/");
      assert.equal(config.openai.baseUrl, "http://localhost:11434/v1");
      assert.equal(config.openai.timeoutMs, 300_000);
      assert.equal(config.slack.timeoutMs, 5_000);
      assert.deepEqual(config.database, {
        url: "postgresql://baton:pw@db:5432/baton",
        dataDir: "/var/lib/baton",
        embeddedPort: 5544,
      });
      assert.deepEqual(config.http, { port: 8080, enabled: false });
      assert.equal(config.agentsFile, "/etc/baton/agents.yml");
      assert.equal(config.logLevel, "debug");
      assert.equal(config.workers, 16);
      assert.equal(config.jobRetries, 0);
      assert.ok(Object.isFrozen(config) && Object.isFrozen(config.slack));
      assert.throws(() => {
        (config.http as { port: number }).port = 1;
      }, TypeError);
    });

    it("treats blank values as unset and trims pasted whitespace", () => {
      const config = loadConfig({
        ...REQUIRED,
        SLACK_BOT_TOKEN: " xoxb-x\n",
        PORT: "",
        LOG_LEVEL: " ",
      });
      assert.equal(config.slack.botToken, "xoxb-x");
      assert.equal(config.http.port, 3000);
      assert.equal(config.logLevel, "info");
    });

    it("names a value wrapped in quotes, as an env file for docker keeps them, without its value", () => {
      const message = configErrorOf(() =>
        loadConfig({
          ...REQUIRED,
          SLACK_BOT_TOKEN: '"xoxb-bot-secret-1"',
          OPENAI_API_KEY: "'sk-openai-secret-3'",
          PORT: '"8080"',
        }),
      );
      const lines = message.split("\n").slice(1);
      assert.equal(lines.length, 3, message);
      for (const name of ["SLACK_BOT_TOKEN", "OPENAI_API_KEY", "PORT"])
        assert.match(message, new RegExp(`${name} is wrapped in quotes.*: remove them`));
      assert.doesNotMatch(message, /must start with xoxb-|bot-secret-1|openai-secret-3|8080/);
      assert.throws(
        () => loadDatabaseConfig({ DATABASE_URL: '"postgres://db/baton"' }),
        /DATABASE_URL is wrapped in quotes/,
      );
    });

    it("lists every missing variable in one message, each with what to set", () => {
      const message = configErrorOf(() => loadConfig({}));
      const lines = message.split("\n").slice(1);
      assert.equal(lines.length, 3);
      assert.match(message, /SLACK_BOT_TOKEN is missing: .*OAuth & Permissions.*xoxb-/);
      assert.match(message, /SLACK_SIGNING_SECRET is missing: .*Basic Information/);
      assert.match(message, /OPENAI_API_KEY is missing: set it/);
    });

    const malformed: Record<string, string> = {
      SLACK_BOT_TOKEN: "xoxp-user-token",
      SLACK_APP_TOKEN: "xoxb-wrong-kind",
      SLACK_API_URL: "localhost:4000",
      OPENAI_BASE_URL: "not a url",
      OPENAI_TIMEOUT_SECONDS: "0",
      DATABASE_URL: "mysql://root:pw@db/baton",
      BATON_EMBEDDED_PG_PORT: "70000",
      PORT: "80a",
      LOG_LEVEL: "verbose",
      BATON_WORKERS: "0",
      BATON_HTTP: "off",
      BATON_JOB_RETRIES: "21",
    };
    for (const [name, value] of Object.entries(malformed)) {
      it(`names ${name} when it is malformed`, () => {
        const message = configErrorOf(() => loadConfig({ ...REQUIRED, [name]: value }));
        assert.match(message, new RegExp(`^  ${name} is invalid: .*(set|use|create|start)`, "m"));
      });
    }

    it("names every value BATON_HTTP takes, and reads each", () => {
      const message = configErrorOf(() => loadConfig({ ...REQUIRED, BATON_HTTP: "off" }));
      assert.match(message, /BATON_HTTP is invalid: set it to 0 or false .*, or 1 or true /);
      for (const [value, enabled] of [
        ["0", false],
        ["false", false],
        ["1", true],
        ["true", true],
      ])
        assert.equal(loadConfig({ ...REQUIRED, BATON_HTTP: String(value) }).http.enabled, enabled);
    });

    it("reports all malformed variables at once without echoing any value", () => {
      const secrets = {
        SLACK_BOT_TOKEN: "xoxp-TOPSECRET1",
        SLACK_SIGNING_SECRET: "TOPSECRET2",
        SLACK_APP_TOKEN: "xoxb-TOPSECRET3",
        OPENAI_API_KEY: "TOPSECRET4",
        DATABASE_URL: "mysql://root:TOPSECRET5@db/baton",
        OPENAI_BASE_URL: "ftp://TOPSECRET6@host",
      };
      const message = configErrorOf(() => loadConfig(secrets));
      assert.equal(message.split("\n").length - 1, 4);
      assert.doesNotMatch(message, /TOPSECRET/);
    });

    it("names a required variable set under a misspelt name, and what to rename", () => {
      const { SLACK_SIGNING_SECRET: secret, ...rest } = REQUIRED;
      const message = configErrorOf(() => loadConfig({ ...rest, SLACK_SIGNNG_SECRET: secret }));
      assert.match(
        message,
        /\n {2}SLACK_SIGNING_SECRET is missing: .* SLACK_SIGNNG_SECRET is set: rename it to SLACK_SIGNING_SECRET\.$/,
      );
      assert.ok(!message.includes(secret), "the value is never repeated");
    });

    it("finds optional settings under a typo, a wrong case or another tool's name", () => {
      const env = {
        ...REQUIRED,
        SLACK_APP_TOKN: "xapp-1",
        log_level: "debug",
        OPENAI_API_BASE: "http://localhost:11434/v1",
        BATON_WROKERS: "2",
        BATON_EMBEDED_PG_PORT: "5544",
      };
      assert.deepEqual(
        misspelledEnv(env).map((m) => `${m.given} → ${m.meant}`),
        [
          "SLACK_APP_TOKN → SLACK_APP_TOKEN",
          "log_level → LOG_LEVEL",
          "OPENAI_API_BASE → OPENAI_BASE_URL",
          "BATON_WROKERS → BATON_WORKERS",
          "BATON_EMBEDED_PG_PORT → BATON_EMBEDDED_PG_PORT",
        ],
      );
      // Read all the same: the config is what the right names give.
      assert.equal(loadConfig(env).workers, 4);
    });

    it("leaves alone other programs' variables, blank ones, and a misspelling beside its setting", () => {
      const env = {
        ...REQUIRED,
        PGPORT: "5432",
        PATH: "/usr/bin",
        HOSTNAME: "baton-1",
        NODE_ENV: "production",
        BATON_TEST_PG_PORT: "54391",
        SLACK_CLIENT_ID: "123.456",
        OPENAI_ORG_ID: "org-1",
        SLACK_APP_TOKN: " ",
        OPENAI_API_BASE: "http://localhost:11434/v1",
        OPENAI_BASE_URL: "http://localhost:11434/v1",
      };
      assert.deepEqual(misspelledEnv(env), []);
    });

    it("summarises the config for the log without secrets", () => {
      const config = loadConfig({
        ...REQUIRED,
        SLACK_APP_TOKEN: "xapp-app-secret-4",
        DATABASE_URL: "postgres://baton:db-secret-5@db/baton",
        OPENAI_BASE_URL: "http://user:base-secret-6@localhost:11434/v1",
      });
      const summary = redactedConfigSummary(config);
      const text = JSON.stringify(summary);
      assert.doesNotMatch(text, /secret/);
      assert.equal(summary.slack.botToken, "set");
      assert.equal(summary.slack.mode, "socket");
      assert.equal(summary.openai.baseUrl, "http://localhost:11434");
      assert.deepEqual(summary.database, { url: "set" });
    });

    it("lists every secret's value for masking, passwords as written and decoded", () => {
      const config = loadConfig({
        ...REQUIRED,
        SLACK_APP_TOKEN: "xapp-app-secret-4",
        DATABASE_URL: "postgres://baton:db%40secret-5@db/baton?password=param-secret-7",
        OPENAI_BASE_URL: "http://user:base-secret-6@localhost:11434/v1",
      });
      assert.deepEqual(secretValues(config).sort(), [
        "base-secret-6",
        "db%40secret-5",
        "db@secret-5",
        "param-secret-7",
        "signing-secret-2",
        "sk-openai-secret-3",
        "xapp-app-secret-4",
        "xoxb-bot-secret-1",
      ]);
      assert.deepEqual(secretValues(loadConfig(REQUIRED)).sort(), [
        "signing-secret-2",
        "sk-openai-secret-3",
        "xoxb-bot-secret-1",
      ]);
    });
  });

  const fixture = (name: string) =>
    new URL(`fixtures/agents/${name}.yml`, import.meta.url).pathname;
  const DEMO_TOOLS = new Set([
    "lookup_order",
    "get_fulfillment_status",
    "ship_order",
    "check_stock",
    "adjust_stock",
    "check_return_eligibility",
    "create_return_label",
    "receive_return",
    "issue_refund",
  ]);

  const MINIMAL = `agents:
  - id: helper
    name: Helper
    icon: ":wave:"
    instructions: Answer briefly.
`;

  async function agentsErrorOf(name: string, knownTools?: ReadonlySet<string>): Promise<string> {
    const text = await readFile(fixture(name), "utf8");
    return configErrorOf(() => parseAgentsFile(text, `${name}.yml`, knownTools));
  }

  describe("agents file", () => {
    it("loads the default agents.yml against the demo tools", async () => {
      const file = await loadAgentsFile(
        new URL("../agents.yml", import.meta.url).pathname,
        DEMO_TOOLS,
      );
      assert.deepEqual(
        file.agents.map((a) => a.id),
        ["customer-service", "fulfillment", "inventory", "billing"],
      );
      assert.equal(file.defaults.entry_agent, "customer-service");
      for (const agent of file.agents) assert.ok(agent.instructions.length <= 900, agent.id);
      const [refunds] = file.policies.approvals;
      assert.equal(refunds?.tool, "issue_refund");
      assert.deepEqual(refunds?.when, { argument: "amount_usd", greater_than: 100 });
      assert.equal(refunds?.expires_after, 4 * 3_600_000);
      assert.equal(file.digest.stale_after, 24 * 3_600_000);
    });

    it("checks the default agents.yml's policies against the demo tools' classes and arguments", async () => {
      const file = await loadAgentsFile(
        new URL("../agents.yml", import.meta.url).pathname,
        demoTools,
      );
      assert.deepEqual(file.prices, {});
      const refund = demoTools.find((t) => t.name === "issue_refund");
      assert.ok(refund && refund.toolClass !== "read");
    });

    it("applies defaults to a minimal file", async () => {
      const file = await loadAgentsFile(fixture("minimal"));
      assert.equal(file.defaults.model, "gpt-4o-mini");
      assert.equal(file.agents[0]?.autonomy, "autonomous");
      assert.equal(file.digest.schedule, "0 9 * * 1-5");
    });

    it("says what to do when the file does not exist", async () => {
      await assert.rejects(loadAgentsFile(fixture("no-such-file")), (error: Error) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /no-such-file\.yml is not found: .*BATON_AGENTS_FILE/);
        return true;
      });
    });

    it("says a folder given for the file is one, and not to create the file", async () => {
      const folder = await mkdtemp(path.join(tmpdir(), "baton-agents-folder-"));
      try {
        await assert.rejects(loadAgentsFile(folder), (error: Error) => {
          assert.ok(error instanceof ConfigError);
          assert.match(error.message, /is a folder: set BATON_AGENTS_FILE to the file, such as /);
          assert.doesNotMatch(error.message, /create it/);
          return true;
        });
      } finally {
        await rm(folder, { recursive: true, force: true });
      }
    });

    // Inline, not a fixture: Biome lints the repository's YAML and would refuse a broken file.
    it("reports a YAML syntax error at its line and column", () => {
      const text = MINIMAL.replace("name: Helper", "name: Helper: the first one");
      const message = configErrorOf(() => parseAgentsFile(text, "agents.yml"));
      assert.match(message, /^agents\.yml:3:11 Nested mappings are not allowed/m);
    });

    it("says what to write for YAML's own mistakes: a key twice, a second document, a tab, a colon", () => {
      const errorOf = (text: string) => configErrorOf(() => parseAgentsFile(text, "agents.yml"));
      assert.match(
        errorOf(MINIMAL.replace("name: Helper", "name: Helper\n    name: Helper two")),
        /^agents\.yml:4:5 "name" is set twice in the same place; keep one$/m,
      );
      assert.match(
        errorOf(`${MINIMAL}---\nagents: []\n`),
        /^agents\.yml:6:1 the file holds more than one YAML document; remove the "---" line/m,
      );
      assert.match(
        errorOf(MINIMAL.replace("  - id: helper", "\t- id: helper")),
        /a tab indents this line; indent with spaces/,
      );
      assert.match(
        errorOf(MINIMAL.replace("Answer briefly.", "Note: be kind")),
        /^agents\.yml:5:19 .*; a value with ": " in it goes in quotes \(instructions: "Note: be kind"\)/m,
      );
    });

    it("says a line indented a space off is out of line with its neighbours, not a value to quote", () => {
      const linesOf = (text: string) =>
        configErrorOf(() => parseAgentsFile(text, "agents.yml"))
          .split("\n")
          .slice(1);
      const outOfLine = "this line is indented differently from the settings beside it";
      // One space too far: YAML reads the line as more of the value above it.
      assert.deepEqual(linesOf(MINIMAL.replace("    name: Helper", "     name: Helper")), [
        `agents.yml:3:6 ${outOfLine}; line it up with them: start it at column 5, as line 2 does`,
      ]);
      const last = `${MINIMAL}defaults:\n  model: gpt-4o-mini\n   entry_agent: helper\n`;
      assert.deepEqual(linesOf(last), [
        `agents.yml:8:4 ${outOfLine}; line it up with them: start it at column 3, as line 7 does`,
      ]);
      // After a quoted value, YAML's own words ("All mapping items must start at the same column").
      const quoted = MINIMAL.replace("    name: Helper", '    name: "Helper"').replace(
        "    icon",
        "     icon",
      );
      assert.deepEqual(linesOf(quoted), [
        `agents.yml:4:6 ${outOfLine}; line it up with them: start it at column 5, as line 3 does`,
      ]);
      // One space short: the line above is right, as the settings under it show; what YAML then
      // misreads on that line and after it follows from it, and is not told.
      assert.deepEqual(linesOf(MINIMAL.replace("    name: Helper", "   name: Helper")), [
        `agents.yml:3:4 ${outOfLine}; line it up with them: start it at column 5, as line 2 does`,
      ]);
    });

    it("tells a tab once, at its line, and nothing YAML then misreads after it", () => {
      const linesOf = (text: string) =>
        configErrorOf(() => parseAgentsFile(text, "agents.yml"))
          .split("\n")
          .slice(1);
      const tab = "a tab indents this line; indent with spaces";
      assert.deepEqual(linesOf(MINIMAL.replace("  - id: helper", "\t- id: helper")), [
        `agents.yml:2:1 ${tab}`,
      ]);
      // After spaces, YAML itself does not name the tab.
      assert.deepEqual(linesOf(MINIMAL.replace("    name: Helper", "  \tname: Helper")), [
        `agents.yml:3:1 ${tab}`,
      ]);
      // Every line a tab indents, and a mistake before the first.
      const twice = MINIMAL.replace("    name: Helper", "    name: Helper\n    name: Again")
        .replace("    icon", "\ticon")
        .replace("    instructions", "\tinstructions");
      assert.deepEqual(linesOf(twice), [
        'agents.yml:4:5 "name" is set twice in the same place; keep one',
        `agents.yml:5:1 ${tab}`,
        `agents.yml:6:1 ${tab}`,
      ]);
    });

    it("reads a shared block of settings merged in with <<", () => {
      const file = parseAgentsFile(
        `agents:
  - id: helper
    name: Helper
    <<: &common
      icon: ":wave:"
      instructions: Answer briefly.
  - <<: *common
    id: second
    name: Second
`,
        "agents.yml",
      );
      assert.deepEqual(
        file.agents.map((a) => [a.id, a.icon, a.instructions]),
        [
          ["helper", ":wave:", "Answer briefly."],
          ["second", ":wave:", "Answer briefly."],
        ],
      );
    });

    it("reports every schema issue at the line of the offending node", async () => {
      const lines = (await agentsErrorOf("schema-error")).split("\n").slice(1);
      assert.deepEqual(lines, [
        "schema-error.yml:6:5 agents[1].instructions: missing; add it",
        "schema-error.yml:6:9 agents[1].id: use lowercase letters, digits and dashes, starting with a letter",
        'schema-error.yml:8:11 agents[1].icon: use ":emoji_name:" or an https:// image URL',
        "schema-error.yml:9:5 agents[1].autonmy: unknown setting; did you mean autonomy? (here: id, name, icon, model, instructions, autonomy, tools, handoffs, channels, caps)",
      ]);
    });

    it("says what to write for an emoji name left unquoted, and which lanes there are", () => {
      const unquoted = MINIMAL.replace(/icon: ".*"/, "icon: :wave:");
      assert.match(
        configErrorOf(() => parseAgentsFile(unquoted, "agents.yml")),
        /Nested mappings are not allowed in compact mappings; a value that starts with ":" \(an emoji name\) goes in quotes: icon: ":wave:"/,
      );
      const lane = `${MINIMAL}policies:\n  lanes:\n    billing:\n      users: [U0LEE]\n`;
      assert.match(
        configErrorOf(() => parseAgentsFile(lane, "agents.yml")),
        /policies\.lanes\.billing: unknown setting; check its spelling and indentation \(here: support, sales, operations, owner_escalation\)/,
      );
    });

    it("asks whether a misspelt setting, tool or agent meant the one a typo away", () => {
      const text = `defaults:
  entry_agnt: helper
agents:
  - id: helper
    name: Helper
    icon: ":wave:"
    instructions: Answer briefly.
    tools: [lookup_ordr, ship_it]
    handoffs: [fulfilment]
  - id: fulfillment
    name: Fulfillment
    icon: ":package:"
    instructions: Ship orders.
`;
      const tools = new Set(["lookup_order", "ship_order"]);
      const errors = configErrorOf(() => parseAgentsFile(text, "agents.yml", tools));
      assert.match(
        errors,
        /:2:3 defaults\.entry_agnt: unknown setting; did you mean entry_agent\? \(here: /,
      );
      const crossField = configErrorOf(() =>
        parseAgentsFile(text.replace("entry_agnt", "entry_agent"), "agents.yml", tools),
      );
      assert.deepEqual(crossField.split("\n").slice(1), [
        'agents.yml:8:13 agents[0].tools[0]: no tool is named "lookup_ordr"; did you mean "lookup_order"? (tools: lookup_order, ship_order)',
        // Three letters from ship_order: no guess.
        'agents.yml:8:26 agents[0].tools[1]: no tool is named "ship_it" (tools: lookup_order, ship_order)',
        'agents.yml:9:16 agents[0].handoffs[0]: no agent has the id "fulfilment"; did you mean "fulfillment"? (agents: helper, fulfillment)',
      ]);
    });

    it("reports an empty file", () => {
      const message = configErrorOf(() => parseAgentsFile("# nothing yet\n", "agents.yml"));
      assert.match(message, /^agents\.yml:1:1 the file is empty/m);
    });

    describe("cross-field checks", async () => {
      const message = await agentsErrorOf("cross-field", new Set(["lookup_order"]));
      const expected = {
        "unknown entry agent":
          'cross-field.yml:2:16 defaults.entry_agent: no agent has the id "nobody"',
        "built-in tool listed": 'cross-field.yml:8:27 agents[0].tools[1]: "hand_back" is built in',
        "unknown tool": 'cross-field.yml:8:38 agents[0].tools[2]: no tool is named "teleport"',
        "unknown handoff":
          'cross-field.yml:9:19 agents[0].handoffs[1]: no agent has the id "ghost"',
        "handoff to itself": "cross-field.yml:9:26 agents[0].handoffs[2]: an agent cannot hand off",
        "shared channel":
          'cross-field.yml:15:16 agents[1].channels[0]: C0SHARED is already claimed by "a"',
        "duplicate id": 'cross-field.yml:16:9 agents[2].id: "b" is already the id of agents[1]',
        "reserved id": 'cross-field.yml:20:9 agents[3].id: "human" is reserved',
        "policy on unknown tool":
          'cross-field.yml:27:13 policies.approvals[0].tool: no tool is named "wire_money"',
        "bad cron": 'cross-field.yml:30:13 digest.schedule: "0 9 * *" is not a 5-field cron',
        "bad timezone": 'cross-field.yml:31:13 digest.timezone: "Mars/Olympus" is not a time zone',
      };
      for (const [check, line] of Object.entries(expected)) {
        it(`reports ${check}`, () => assert.ok(message.includes(`\n${line}`), message));
      }
      it("reports nothing else", () => {
        assert.equal(message.split("\n").length - 1, Object.keys(expected).length);
      });
    });

    it("skips tool names when no known set is given", async () => {
      const message = await agentsErrorOf("cross-field");
      assert.doesNotMatch(message, /no tool is named/);
      assert.match(message, /"hand_back" is built in/);
    });

    it("refuses a 6-field cron that node-cron would accept", () => {
      const text = `${MINIMAL}digest:\n  schedule: "0 0 9 * * 1-5"\n  timezone: Europe/Paris\n`;
      const message = configErrorOf(() => parseAgentsFile(text, "agents.yml"));
      assert.match(message, /^agents\.yml:7:13 digest\.schedule: /m);
      assert.doesNotMatch(message, /timezone/);
    });

    it("names the cron field out of its range, and the count of fields when it is not 5", () => {
      const messageOf = (schedule: string) =>
        configErrorOf(() =>
          parseAgentsFile(`${MINIMAL}digest:\n  schedule: "${schedule}"\n`, "agents.yml"),
        );
      assert.match(
        messageOf("0 25 * * *"),
        /digest\.schedule: "0 25 \* \* \*": "25" is not a valid hour \(0–23\); e\.g\. "0 9 \* \* 1-5"/,
      );
      assert.match(messageOf("0 9 * 13 *"), /"13" is not a valid month \(1–12 or jan–dec\)/);
      assert.match(messageOf("0 9 * *"), /is not a 5-field cron expression .*: it has 4;/);
    });

    it("refuses a duplicate approval policy id", () => {
      const policy = "    - { id: p, tool: t, approvers: { users: [U0LEAD] } }\n";
      const text = `${MINIMAL}policies:\n  approvals:\n${policy}${policy}`;
      const message = configErrorOf(() => parseAgentsFile(text, "agents.yml"));
      assert.match(
        message,
        /^agents\.yml:9:\d+ policies\.approvals\[1\]\.id: "p" is already used/m,
      );
    });

    it("reads HTTP tools; refuses a taken name, an unusable schema and an unset variable at their lines", () => {
      const agent = `agents:\n  - id: helper\n    name: Helper\n    icon: ":wave:"\n    instructions: Answer briefly.\n    tools: [find_customer]\n`;
      const tool = (name: string, extra = "") =>
        `  - name: ${name}\n    description: Find a customer.\n    class: read\n    url: https://crm.example/find\n    headers: { Authorization: "Bearer \${CRM_TOKEN}" }\n    parameters: { type: object${extra} }\n`;
      const good = `${agent}tools:\n${tool("find_customer")}`;
      const file = parseAgentsFile(good, "agents.yml", new Set(["lookup_order"]), {
        CRM_TOKEN: "x",
      });
      assert.equal(file.tools[0]?.name, "find_customer");
      assert.equal(file.tools[0]?.timeout, 30_000);

      const bad = `${agent}tools:\n${tool("find_customer")}${tool("lookup_order")}${tool("hand_back", ", properties: { a: { type: strange } }")}`;
      const message = configErrorOf(() =>
        parseAgentsFile(bad, "agents.yml", new Set(["lookup_order"]), {}),
      );
      assert.match(
        message,
        /^agents\.yml:12:\d+ tools\[0\]\.headers\.Authorization: the environment variable CRM_TOKEN is not set; set it in the environment Baton starts with, or remove the header$/m,
      );
      const hostless = good.replace("https://crm.example", `https://\${CRM_HOST}`);
      assert.match(
        configErrorOf(() => parseAgentsFile(hostless, "agents.yml", undefined, { CRM_TOKEN: "x" })),
        /^agents\.yml:11:\d+ tools\[0\]\.url: the environment variable CRM_HOST is not set; set it in the environment Baton starts with$/m,
      );
      assert.match(
        message,
        /^agents\.yml:14:\d+ tools\[1\]\.name: "lookup_order" is already a tool of Baton's/m,
      );
      assert.match(
        message,
        /^agents\.yml:20:\d+ tools\[2\]\.name: "hand_back" is a built-in tool's name/m,
      );
      assert.match(
        message,
        /^agents\.yml:25:\d+ tools\[2\]\.parameters: Baton cannot check arguments against this schema/m,
      );
    });

    // A tool in code says what it does to the requester ("approval to issue a refund first"); an
    // HTTP tool could not, and read as its name with spaces.
    it("reads an HTTP tool's label, and refuses one that is not a short single line at its line", () => {
      const agent = `agents:\n  - id: helper\n    name: Helper\n    icon: ":wave:"\n    instructions: Answer briefly.\n    tools: [refund_order]\n`;
      const tool = (label: string) =>
        `tools:\n  - name: refund_order\n    description: Refund an order.\n    class: write\n    label: ${label}\n    url: https://billing.example/refund\n    parameters: { type: object }\n`;
      const file = parseAgentsFile(`${agent}${tool("issue a refund")}`, "agents.yml");
      assert.equal(file.tools[0]?.label, "issue a refund");
      for (const label of ['"issue a\\nrefund"', `"${"refund ".repeat(20)}"`, '"  "'])
        assert.match(
          configErrorOf(() => parseAgentsFile(`${agent}${tool(label)}`, "agents.yml")),
          /^agents\.yml:11:\d+ tools\[0\]\.label: a short phrase on one line/m,
        );
    });

    it("reads rate limits, and refuses an unknown or repeated tool and a bad window at their lines", () => {
      const good = `${MINIMAL}policies:\n  rate_limits:\n    tools:\n      - { tool: issue_refund, max: 20, per: 1h }\n    new_tasks_per_person: { max: 10, per: 15m }\n`;
      const file = parseAgentsFile(good, "agents.yml", new Set(["issue_refund"]));
      assert.deepEqual(file.policies.rate_limits, {
        tools: [{ tool: "issue_refund", max: 20, per: 3_600_000 }],
        new_tasks_per_person: { max: 10, per: 900_000 },
      });
      assert.deepEqual(parseAgentsFile(MINIMAL, "agents.yml").policies.rate_limits, { tools: [] });

      const bad = `${MINIMAL}policies:\n  rate_limits:\n    tools:\n      - { tool: wire_money, max: 1, per: 1h }\n      - { tool: issue_refund, max: 1, per: 1h }\n      - { tool: issue_refund, max: 2, per: an hour }\n`;
      const message = configErrorOf(() =>
        parseAgentsFile(bad, "agents.yml", new Set(["issue_refund"])),
      );
      assert.match(
        message,
        /^agents\.yml:11:\d+ policies\.rate_limits\.tools\[2\]\.per: write a duration/m,
      );
      const cross = `${MINIMAL}policies:\n  rate_limits:\n    tools:\n      - { tool: wire_money, max: 1, per: 1h }\n      - { tool: issue_refund, max: 1, per: 1h }\n      - { tool: issue_refund, max: 2, per: 2h }\n`;
      const crossMessage = configErrorOf(() =>
        parseAgentsFile(cross, "agents.yml", new Set(["issue_refund"])),
      );
      assert.match(
        crossMessage,
        /^agents\.yml:9:\d+ policies\.rate_limits\.tools\[0\]\.tool: no tool is named "wire_money"/m,
      );
      assert.match(
        crossMessage,
        /^agents\.yml:11:\d+ policies\.rate_limits\.tools\[2\]\.tool: "issue_refund" already has a rate limit/m,
      );
    });
  });
});

describe("npm run check", () => {
  const ROOT = new URL("../", import.meta.url).pathname;

  /** scripts/check.ts from the repository's folder, as npm runs it, with only `env` set. */
  async function check(args: string[], env: NodeJS.ProcessEnv = {}) {
    try {
      const run = await promisify(execFile)(process.execPath, ["scripts/check.ts", ...args], {
        cwd: ROOT,
        env,
      });
      return { code: 0, ...run };
    } catch (error) {
      const { code, stdout, stderr } = error as { code: number; stdout: string; stderr: string };
      return { code, stdout, stderr };
    }
  }

  it("checks the file Baton would load without Slack or model settings, and names it", async () => {
    assert.deepEqual(await check([]), {
      code: 0,
      stdout: "agents.yml: 4 agents, OK\n",
      stderr: "",
    });
    const minimal = "test/fixtures/agents/minimal.yml";
    assert.equal(
      (await check([], { BATON_AGENTS_FILE: minimal })).stdout,
      `${minimal}: 1 agent, OK\n`,
    );
    // npm runs the script from the repository's folder: a path given is from where npm was run.
    const given = await check(["fixtures/agents/minimal.yml"], { INIT_CWD: `${ROOT}test` });
    assert.equal(given.stdout, "fixtures/agents/minimal.yml: 1 agent, OK\n");
  });

  it("warns of a setting under a near miss of its name, the file it would have named unread", async () => {
    const run = await check([], { BATON_AGENT_FILE: "test/fixtures/agents/minimal.yml" });
    assert.deepEqual(run, {
      code: 0,
      stdout: "agents.yml: 4 agents, OK\n",
      stderr:
        "warning: BATON_AGENT_FILE is set, but Baton reads BATON_AGENTS_FILE, which is unset: rename BATON_AGENT_FILE to BATON_AGENTS_FILE, or unset it.\n",
    });
  });

  it("prints every mistake at its line against Baton's tools and exits 1", async () => {
    const { code, stdout, stderr } = await check(["test/fixtures/agents/cross-field.yml"]);
    assert.equal(code, 1);
    assert.equal(stdout, "");
    assert.match(stderr, /^test\/fixtures\/agents\/cross-field\.yml is not valid:$/m);
    // Only a check against the tools registered in code knows lookup_order and not teleport.
    assert.match(
      stderr,
      /^test\/fixtures\/agents\/cross-field\.yml:8:38 agents\[0\]\.tools\[2\]: no tool is named "teleport"/m,
    );
  });

  it("checks an HTTP tool's variables in its own environment", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "baton-check-"));
    try {
      const file = path.join(dir, "crm.yml");
      await writeFile(
        file,
        `agents:\n  - id: helper\n    name: Helper\n    icon: ":wave:"\n    instructions: Answer briefly.\n    tools: [lookup_order, find_customer]\ntools:\n  - name: find_customer\n    description: Find a customer.\n    class: read\n    url: https://crm.example/find\n    headers: { Authorization: "Bearer \${CRM_TOKEN}" }\n    parameters: { type: object }\n`,
      );
      const unset = await check([file]);
      assert.equal(unset.code, 1);
      assert.match(
        unset.stderr,
        /crm\.yml:12:\d+ tools\[0\]\.headers\.Authorization: the environment variable CRM_TOKEN is not set/,
      );
      assert.deepEqual(await check([file], { CRM_TOKEN: "crm-token" }), {
        code: 0,
        stdout: `${file}: 1 agent, OK\n`,
        stderr: "",
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("manifest", async () => {
  // Slack's published schema (slackapi/manifest-schema), kept in ../shared beside the repo.
  const SCHEMA_DIR = new URL("../../shared/data/slack-manifest-schema/", import.meta.url);
  // The dispatcher refers to the versioned schemas by these URLs; they are served from disk instead.
  const REMOTE = "https://raw.githubusercontent.com/slackapi/manifest-schema/v0.5.0/schemas/";

  function readJson(name: string): Record<string, unknown> {
    return JSON.parse(readFileSync(new URL(name, SCHEMA_DIR), "utf8"));
  }

  function compileManifestSchema(): ValidateFunction {
    // Strict (an unknown keyword or format fails), minus two style rules Slack's dispatcher breaks.
    const ajv = new Ajv({
      allErrors: true,
      strict: true,
      strictTypes: false,
      strictRequired: false,
    });
    // ajv-formats is CommonJS; under nodenext its default export is reached through `.default`.
    addFormats.default(ajv);
    // Slack's schema adds two keywords of its own: `_note` (a comment) and `regex` (background_color's
    // pattern, enforced here as one).
    ajv.addKeyword("_note");
    ajv.addKeyword({
      keyword: "regex",
      type: "string",
      schemaType: "string",
      validate: (pattern: string, data: string) => new RegExp(pattern, "u").test(data),
    });
    for (const version of ["1.0.0", "2.0.0"]) {
      const name = `manifest.schema.${version}.json`;
      ajv.addSchema(readJson(name), `${REMOTE}${name}`);
    }
    return ajv.compile(readJson("manifest.schema.json"));
  }

  interface Manifest {
    display_information: { name: string };
    features: {
      bot_user: { display_name: string; always_online?: boolean };
      app_home: { home_tab_enabled?: boolean; messages_tab_enabled?: boolean };
      slash_commands: { command: string; url?: string; usage_hint?: string }[];
    };
    oauth_config: { scopes: { bot: string[] } };
    settings: {
      event_subscriptions: { request_url?: string; bot_events: string[] };
      interactivity: { is_enabled: boolean; request_url?: string };
      socket_mode_enabled: boolean;
      token_rotation_enabled: boolean;
    };
  }

  const manifestText = readFileSync(new URL("../manifest.yml", import.meta.url), "utf8");
  const load = (): Manifest => parse(manifestText) as Manifest;
  const validate = compileManifestSchema();

  function errorsOf(manifest: unknown): string {
    return validate(manifest) ? "" : JSON.stringify(validate.errors, null, 2);
  }

  describe("manifest.yml", () => {
    it("is valid against Slack's app manifest schema", () => {
      assert.equal(errorsOf(load()), "");
    });

    it("declares what Baton relies on", () => {
      const manifest = load();
      assert.equal(manifest.display_information.name, "Baton");
      assert.equal(manifest.features.bot_user.display_name, "baton");
      assert.equal(manifest.features.bot_user.always_online, true);
      assert.equal(manifest.features.app_home.home_tab_enabled, true);
      assert.equal(manifest.features.app_home.messages_tab_enabled, true);

      const scopes = manifest.oauth_config.scopes.bot;
      for (const scope of ["app_mentions:read", "chat:write", "chat:write.customize", "commands"]) {
        assert.ok(scopes.includes(scope), `missing bot scope ${scope}`);
      }
      assert.equal(new Set(scopes).size, scopes.length, "duplicate scopes");

      const baton = manifest.features.slash_commands.find((c) => c.command === "/baton");
      assert.ok(baton, "missing /baton");
      // Every verb /baton answers (src/slack/words.ts's help) is in the hint Slack shows as one types.
      for (const verb of ["status", "audit", "who", "done", "agents", "help"])
        assert.match(baton.usage_hint ?? "", new RegExp(`\\b${verb}\\b`), `the hint names ${verb}`);

      const events = manifest.settings.event_subscriptions.bot_events;
      const relied = [
        "app_mention",
        "message.channels",
        "message.im",
        "message.mpim",
        "app_home_opened",
      ];
      for (const event of relied) {
        assert.ok(events.includes(event), `missing bot event ${event}`);
      }
      assert.equal(manifest.settings.interactivity.is_enabled, true);
      assert.equal(manifest.settings.socket_mode_enabled, false);
      assert.equal(manifest.settings.token_rotation_enabled, false);

      // Bolt's HTTP receiver serves events, actions and commands on one path.
      const urls = [
        manifest.settings.event_subscriptions.request_url,
        manifest.settings.interactivity.request_url,
        baton.url,
      ];
      assert.deepEqual(new Set(urls), new Set(["https://baton.example.com/slack/events"]));
    });

    it("rejects a broken manifest, naming the broken field", () => {
      type Breakage = [where: string, breakIt: (m: Manifest & Record<string, unknown>) => void];
      const breakages: Breakage[] = [
        ["", (m) => Object.assign(m, { setings: {} })],
        [
          "/features/bot_user/always_online",
          (m) => Object.assign(m.features.bot_user, { always_online: "yes" }),
        ],
        [
          "/features/bot_user",
          (m) => Object.assign(m.features.bot_user, { display_name: undefined }),
        ],
        [
          "/features/slash_commands/0/command",
          (m) => Object.assign(m.features.slash_commands[0] ?? {}, { command: "baton" }),
        ],
        [
          "/display_information/name",
          (m) => Object.assign(m.display_information, { name: "B".repeat(36) }),
        ],
        [
          "/display_information/background_color",
          (m) => Object.assign(m.display_information, { background_color: "#12345z" }),
        ],
        ["/settings/interactivity", (m) => Object.assign(m.settings, { interactivity: {} })],
      ];
      for (const [where, breakIt] of breakages) {
        const manifest = load() as Manifest & Record<string, unknown>;
        breakIt(manifest);
        // The JSON round trip drops the `undefined` that stands for a deleted key.
        assert.equal(
          validate(JSON.parse(JSON.stringify(manifest))),
          false,
          `accepted a break at ${where}`,
        );
        const paths = (validate.errors ?? []).map((error) => error.instancePath);
        assert.ok(paths.includes(where), `no error at "${where}": ${paths.join(", ")}`);
      }
    });
  });
});
